# amaranth: UnusedElaboratable=no
"""Register map and AXI4-Lite register file: table checks, generated docs, Amaranth
simulation against :class:`~xnorlearn.sim.tb_axil.RegisterModel`, cocotb benches."""

import re
from pathlib import Path

import pytest
from amaranth.back import verilog
from amaranth.hdl import Value
from amaranth.sim import Simulator

from xnorlearn import contract as rm
from xnorlearn.hw.axil import AxiLiteRegisters, AxiLiteSignature
from xnorlearn.contract import PYNQ_Z2, Access, Build, Field, Register, RegisterMap
from xnorlearn.sim.runner import run_cocotb
from xnorlearn.sim.tb_axil import RegisterModel, random_addresses
from xnorlearn.sw import protocol

DOCS = Path(__file__).resolve().parents[2] / "docs"
OKAY, SLVERR = 0, 2


# -- register map -------------------------------------------------------------------------------

def test_registers_md_is_generated():
    """docs/registers.md is what benchmarks/gen_regmap_doc.py writes for the PYNQ-Z2 build."""
    assert (DOCS / "registers.md").read_text() == rm.markdown_table(PYNQ_Z2)


def test_driver_offsets():
    offsets = rm.driver_offsets()
    assert type(offsets) is dict and all(type(v) is int for v in offsets.values())
    assert offsets["ID"] == 0 and offsets["CONTROL"] == 0x20 and offsets["STEP"] == 0x38
    assert [offsets[f"WIDTH_{l}"] for l in range(3)] == [0x100, 0x120, 0x140]
    assert offsets["KEY_2"] == 0x150 and "WIDTH_3" not in offsets
    names = {"ID", "VERSION", "BUILD0", "BUILD1", "BUILD2", "BUILD3", "CONTROL", "STATUS",
             "ERROR_CODE", "LAYERS", "INPUTS", "STEP", "PATTERNS", "ERRORS", "CYCLES",
             "CYCLES_FORWARD", "CYCLES_UPDATE", "CYCLES_REINFORCE", "CYCLES_IO"}
    per_layer = {"WIDTH", "GAMMA", "ROBUST", "THRESH", "KEY"}
    for layers in (1, 3, 8):
        offsets = rm.driver_offsets(Build(max_layers=layers))
        assert set(offsets) == names | {f"{n}_{l}" for n in per_layer for l in range(layers)}
        assert len(set(offsets.values())) == len(offsets)


def test_constants():
    regs = RegisterMap(PYNQ_Z2)
    assert regs.const_value("ID") == 0x584E524C
    assert regs.const_value("ID").to_bytes(4, "big") == b"XNRL"
    assert regs.const_value("VERSION") == (rm.VERSION_MAJOR << 16) | rm.VERSION_MINOR
    assert regs.decode("BUILD0", regs.const_value("BUILD0")) == {"lanes": 64, "max_batch": 128}
    assert regs.decode("BUILD1", regs.const_value("BUILD1")) == {"max_width": 256,
                                                                 "max_fan_in": 1024}
    assert regs.decode("BUILD2", regs.const_value("BUILD2")) == {"weight_words": 6144,
                                                                 "max_groups": 16}
    assert regs.decode("BUILD3", regs.const_value("BUILD3")) == {
        "classes": 10, "max_layers": 3, "h_bits": 8, "z_bits": 0}
    b = Build(lanes=1024, max_layers=8, max_width=4095, max_fan_in=4095, classes=16,
              max_batch=1024, max_groups=64, weight_words=(1 << 24) - 1, z_bits=31)
    big = RegisterMap(b)
    for name in ("BUILD0", "BUILD1", "BUILD2", "BUILD3"):
        for field, value in big.decode(name, big.const_value(name)).items():
            assert value == b.field_value(field)
    assert protocol.MAX_LAYERS == rm.LIMITS["max_layers"][1]
    assert protocol.MAX_CLASSES == rm.LIMITS["classes"][1]


def test_check_build():
    regs = RegisterMap(PYNQ_Z2)
    words = {n: regs.const_value(n) for n in ("ID", "VERSION", "BUILD0", "BUILD1", "BUILD2",
                                              "BUILD3")}
    regs.check_build(words)
    regs.check_build(dict(words, VERSION=words["VERSION"] + 1))     # minor: compatible
    other = RegisterMap(Build(lanes=128, classes=16))
    with pytest.raises(ValueError, match=r"does not match the build: lanes: bitstream 128, "
                                         r"expected 64; weight_words: bitstream 3072, expected "
                                         r"6144; classes: bitstream 16, expected 10$"):
        regs.check_build({n: other.const_value(n) for n in words})
    with pytest.raises(ValueError, match=r"id: bitstream 0xdeadbeef, expected 0x584e524c"):
        regs.check_build(dict(words, ID=0xDEADBEEF))
    with pytest.raises(ValueError, match=r"major: bitstream 0x2, expected 0x1"):
        regs.check_build(dict(words, VERSION=0x20000))
    with pytest.raises(ValueError, match="BUILD3 missing"):
        regs.check_build({n: w for n, w in words.items() if n != "BUILD3"})


def test_encode_decode(rng):
    regs = RegisterMap(PYNQ_Z2)
    for reg in regs:
        for _ in range(20):
            fields = {f.name: int(rng.integers(1 << f.width)) for f in reg.fields}
            word = regs.encode(reg.name, **fields)
            assert regs.decode(reg.name, word) == fields
    with pytest.raises(ValueError, match=r"STATUS.phase must be in 0..15, got 16"):
        regs.encode("STATUS", phase=16)
    with pytest.raises(ValueError, match="register STATUS has no field 'bogus'"):
        regs.encode("STATUS", bogus=1)
    with pytest.raises(KeyError, match="no register 'NOPE'"):
        regs["NOPE"]


@pytest.mark.parametrize("kwargs, error, text", [
    ({"lanes": 48}, ValueError, "lanes must be a multiple of 32 in 32..1024, got 48"),
    ({"lanes": 2048}, ValueError, r"lanes must be in 32..1024, got 2048"),
    ({"max_layers": 9}, ValueError, r"max_layers must be in 1..8, got 9"),
    ({"max_width": 4096}, ValueError, r"max_width must be in 1..4095, got 4096"),
    ({"classes": 1}, ValueError, r"classes must be in 2..16, got 1"),
    ({"max_batch": 0}, ValueError, r"max_batch must be in 1..1024, got 0"),
    ({"max_groups": 65}, ValueError, r"max_groups must be in 1..64, got 65"),
    ({"weight_words": 1 << 24}, ValueError, r"weight_words must be in 1..16777215"),
    ({"h_bits": 9}, ValueError, r"h_bits must be in 2..8, got 9"),
    ({"z_bits": 1}, ValueError, r"z_bits must be in 2..31, got 1"),
    ({"draw_lanes": 24}, ValueError, r"draw_lanes must divide lanes \(64\), got 24"),
    ({"lanes": "64"}, TypeError, "lanes must be an integer, got '64'"),
])
def test_bad_build(kwargs, error, text):
    with pytest.raises(error, match=text):
        Build(**kwargs)


def test_default_weight_words():
    assert PYNQ_Z2.weight_words == 256 * 16 + 2 * 256 * 4
    assert Build(lanes=32, max_layers=1, max_width=10, max_fan_in=33).weight_words == 20


def _reg(name, offset, fields, access=Access.RW, **kw):
    return Register(name, offset, access, fields, "test", **kw)


@pytest.mark.parametrize("registers, text", [
    ((_reg("A", 0, (Field("a", 0, 8, ""),)), _reg("B", 0, (Field("b", 0, 8, ""),))),
     "registers A and B share offset 0x0"),
    ((_reg("A", 2, (Field("a", 0, 8, ""),)),), "register A: offset 0x2 is not word aligned"),
    ((_reg("A", 0, (Field("a", 0, 8, ""), Field("b", 4, 8, ""))),),
     "register A: field b overlaps another field"),
    ((_reg("A", 0, (Field("a", 30, 4, ""),)),), "register A: field a bits 33:30 are outside 31:0"),
    ((_reg("A", 0, (Field("a", 0, 8, ""),)), _reg("B", 4, (Field("a", 0, 8, ""),))),
     "field name a of B is also a field of A; port names must be unique"),
    ((_reg("A", 0, (Field("a", 0, 4, "", value=16),), access=Access.CONST),),
     "register A: a = 16 does not fit 4 bits"),
    ((_reg("A", 0, (Field("a", 0, 4, ""),)), _reg("A", 4, (Field("b", 0, 4, ""),))),
     "register name A appears twice"),
    ((_reg("A", 0, (Field("a", 0, 8, ""),)), _reg("L", 0x00, (Field("l", 0, 8, ""),),
                                                    per_layer=True)),
     "registers A and L_0 share offset 0x0"),
])
def test_bad_table(registers, text):
    with pytest.raises(ValueError, match=re.escape(text)):
        RegisterMap(PYNQ_Z2, registers=registers)


# -- component parameters and ports -------------------------------------------------------------

AXI_PORTS = {  # name: (direction seen from the register file, width)
    "awaddr": ("In", None), "awprot": ("In", 3), "awvalid": ("In", 1), "awready": ("Out", 1),
    "wdata": ("In", 32), "wstrb": ("In", 4), "wvalid": ("In", 1), "wready": ("Out", 1),
    "bresp": ("Out", 2), "bvalid": ("Out", 1), "bready": ("In", 1),
    "araddr": ("In", None), "arprot": ("In", 3), "arvalid": ("In", 1), "arready": ("Out", 1),
    "rdata": ("Out", 32), "rresp": ("Out", 2), "rvalid": ("Out", 1), "rready": ("In", 1),
}


@pytest.mark.parametrize("build, addr_width", [(PYNQ_Z2, 12), (Build(max_layers=8), 9),
                                               (Build(max_layers=1), 32)])
def test_ports(build, addr_width):
    dut = AxiLiteRegisters(build=build, addr_width=addr_width)
    assert dut.addr_width == addr_width and dut.regmap.build == build
    members = dut.signature.members
    for name, (direction, width) in AXI_PORTS.items():
        member = members[f"s_axil_{name}"]
        assert member.flow.name == direction, name
        assert Value.cast(getattr(dut, f"s_axil_{name}")).shape().width == (width or addr_width)
    text = verilog.convert(dut, name="axil_regs", emit_src=False)
    for name, (direction, width) in AXI_PORTS.items():
        width = width or addr_width
        vector = f"[{width - 1}:0] " if width > 1 else ""
        decl = f"{'input' if direction == 'In' else 'output'} {vector}"
        assert f"  {decl}s_axil_{name};" in text, name
    layers = build.max_layers
    expected = {
        "soft_reset": ("Out", 1), "clear_error": ("Out", 1), "busy": ("In", 1),
        "error": ("In", 1), "phase": ("In", 4), "error_code": ("In", 8), "layers": ("Out", 4),
        "inputs": ("Out", 12), "step": ("Out", 32), "step_next": ("In", 32),
        "step_load": ("In", 1), "step_written": ("Out", 1), "patterns": ("In", 32),
        "errors": ("In", 32),
        "cycles": ("In", 32), "cycles_forward": ("In", 32), "cycles_update": ("In", 32),
        "cycles_reinforce": ("In", 32), "cycles_io": ("In", 32), "width": ("Out", 12 * layers),
        "gamma": ("Out", 12 * layers), "robust": ("Out", 16 * layers),
        "thresh": ("Out", 17 * layers), "key": ("Out", 32 * layers), "lock": ("In", 1),
        "locked_write": ("Out", 1), "hold": ("In", 1), "reinforcing": ("In", 1),
    }
    core = {n: m for n, m in members.items() if not n.startswith("s_axil_")}
    assert set(core) == set(expected)
    for name, (direction, width) in expected.items():
        assert core[name].flow.name == direction, name
        assert Value.cast(getattr(dut, name)).shape().width == width, name


def test_axi_lite_signature():
    sig = AxiLiteSignature(addr_width=16)
    assert sig.members["awaddr"].flow.name == "Out" and sig.members["awready"].flow.name == "In"
    assert sig == AxiLiteSignature(addr_width=16) and sig != AxiLiteSignature(addr_width=15)
    with pytest.raises(ValueError, match=r"addr_width must be in 3..32, got 2"):
        AxiLiteSignature(addr_width=2)


@pytest.mark.parametrize("kwargs, error, text", [
    ({"addr_width": 8}, ValueError, r"addr_width must be in 9..32, got 8"),
    ({"addr_width": 33}, ValueError, r"addr_width must be in 9..32, got 33"),
    ({"addr_width": 12.0}, TypeError, "addr_width must be an integer, got 12.0"),
    ({"build": {"lanes": 64}}, TypeError, "build must be a Build"),
    ({"regmap": PYNQ_Z2}, TypeError, "regmap must be a RegisterMap"),
    ({"build": PYNQ_Z2, "regmap": RegisterMap()}, ValueError, "give either build or regmap"),
])
def test_bad_parameters(kwargs, error, text):
    with pytest.raises(error, match=text):
        AxiLiteRegisters(**kwargs)


# -- Amaranth simulation ------------------------------------------------------------------------

class Bench:
    """A hand-written AXI4-Lite manager in an Amaranth testbench: AW and W start after
    independent random delays, B and R are stalled at random, and every cycle the
    pulse ports are sampled. Checks the handshake rules (responses only after their
    requests, held while not ready) and, after every access, the ``Out`` ports."""

    def __init__(self, dut, ctx, model, rng, *, idle=0.0, stall=0.0):
        self.dut, self.ctx, self.model, self.rng = dut, ctx, model, rng
        self.idle, self.stall = idle, stall
        self.bus = {n: getattr(dut, f"s_axil_{n}") for n in AXI_PORTS}
        self.pulse_sigs = [getattr(dut, p) for p in model.pulse_ports]
        self.observed = []
        self.run_lengths = []
        self._run = 0
        self.cycles = 0

    async def tick(self, *sigs):
        values = (await self.ctx.tick().sample(*self.pulse_sigs, *sigs))[2:]
        event = tuple(values[:len(self.pulse_sigs)])
        if any(event):
            self.observed.append(event)
            self._run += 1
        elif self._run:
            self.run_lengths.append(self._run)
            self._run = 0
        self.cycles += 1
        assert self.cycles < 200_000, "bench wedged"
        return values[len(self.pulse_sigs):]

    def _delay(self):
        return int(self.rng.integers(4)) if self.rng.random() < self.idle else 0

    def drive_inputs(self):
        for port, value in self.model.in_values().items():
            self.ctx.set(Value.cast(getattr(self.dut, port)), value)
        self.ctx.set(self.dut.lock, self.model.lock)

    def check_outputs(self, what):
        for port, want in self.model.out_values().items():
            got = self.ctx.get(Value.cast(getattr(self.dut, port)))
            assert got == want, f"after {what}: {port} = {got:#x}, expected {want:#x}"

    async def write(self, addr, data, strb=0xF, hold=0):
        """One write; with ``hold``, the port ``hold`` is high for its first ``hold``
        cycles, and no B response may come before they end."""
        b, ctx = self.bus, self.ctx
        want = self.model.write(addr, data, strb)
        ctx.set(self.dut.hold, hold > 0)
        ctx.set(b["awaddr"], addr)
        ctx.set(b["awprot"], int(self.rng.integers(8)))
        ctx.set(b["wdata"], data)
        ctx.set(b["wstrb"], strb)
        aw_at, w_at = self._delay(), self._delay()
        aw_done = w_done = False
        held = None
        for cycle in range(100 + hold):
            if cycle == hold:
                ctx.set(self.dut.hold, 0)
            ctx.set(b["awvalid"], not aw_done and cycle >= aw_at)
            ctx.set(b["wvalid"], not w_done and cycle >= w_at)
            bready = bool(self.rng.random() >= self.stall)
            ctx.set(b["bready"], bready)
            awv, awr, wv, wr, bv, bresp = await self.tick(
                b["awvalid"], b["awready"], b["wvalid"], b["wready"], b["bvalid"], b["bresp"])
            assert not bv or (aw_done and w_done), "B before its AW and W were accepted"
            assert not bv or cycle > hold, f"B in cycle {cycle}, while held for {hold}"
            if held is not None:
                assert bv and bresp == held, "B response withdrawn or changed"
            aw_done |= bool(awv and awr)
            w_done |= bool(wv and wr)
            if bv and bready:
                break
            held = bresp if bv else None
        else:
            raise AssertionError(f"no B response for write {addr:#x}")
        ctx.set(b["awvalid"], 0)
        ctx.set(b["wvalid"], 0)
        ctx.set(b["bready"], 0)
        assert bresp == want, f"write {addr:#x} strb {strb:#x}: bresp {bresp}, expected {want}"
        self.check_outputs(f"write {addr:#x}")

    async def read(self, addr):
        b, ctx = self.bus, self.ctx
        ctx.set(b["araddr"], addr)
        ctx.set(b["arprot"], int(self.rng.integers(8)))
        ar_at = self._delay()
        ar_done = False
        held = None
        for cycle in range(100):
            ctx.set(b["arvalid"], not ar_done and cycle >= ar_at)
            rready = bool(self.rng.random() >= self.stall)
            ctx.set(b["rready"], rready)
            arv, arr, rv, rdata, rresp = await self.tick(
                b["arvalid"], b["arready"], b["rvalid"], b["rdata"], b["rresp"])
            assert not rv or ar_done, "R before its AR was accepted"
            if held is not None:
                assert rv and (rresp, rdata) == held, "R data withdrawn or changed"
            ar_done |= bool(arv and arr)
            if rv and rready:
                break
            held = (rresp, rdata) if rv else None
        else:
            raise AssertionError(f"no R response for read {addr:#x}")
        ctx.set(b["arvalid"], 0)
        ctx.set(b["rready"], 0)
        want = self.model.read(addr)
        assert (rresp, rdata) == want, (f"read {addr:#x}: ({rresp}, {rdata:#x}), expected "
                                        f"({want[0]}, {want[1]:#x})")

    async def pipelined(self, writes, reads):
        """Issue ``writes`` (``(addr, data, strb)``) on AW and W and ``reads`` on AR, each
        channel as a stream with random idle cycles, while B and R are stalled at
        random; responses must come back in order. Writes and reads must not touch
        the same register (their relative order is open)."""
        b, ctx = self.bus, self.ctx
        want_b = [self.model.write(*w) for w in writes]
        want_r = [self.model.read(a) for a in reads]
        aw, w, ar = list(writes), list(writes), list(reads)
        got_b, got_r = [], []
        while len(got_b) < len(writes) or len(got_r) < len(reads):
            go = {ch: bool(q) and self.rng.random() >= self.idle
                  for ch, q in (("aw", aw), ("w", w), ("ar", ar))}
            # valid, once raised, stays until the handshake
            go["aw"] |= bool(ctx.get(b["awvalid"]))
            go["w"] |= bool(ctx.get(b["wvalid"]))
            go["ar"] |= bool(ctx.get(b["arvalid"]))
            ctx.set(b["awvalid"], go["aw"])
            ctx.set(b["wvalid"], go["w"])
            ctx.set(b["arvalid"], go["ar"])
            if aw:
                ctx.set(b["awaddr"], aw[0][0])
            if w:
                ctx.set(b["wdata"], w[0][1])
                ctx.set(b["wstrb"], w[0][2])
            if ar:
                ctx.set(b["araddr"], ar[0])
            bready = bool(self.rng.random() >= self.stall)
            rready = bool(self.rng.random() >= self.stall)
            ctx.set(b["bready"], bready)
            ctx.set(b["rready"], rready)
            (awr, wr, arr, bv, bresp, rv, rresp, rdata) = await self.tick(
                b["awready"], b["wready"], b["arready"], b["bvalid"], b["bresp"],
                b["rvalid"], b["rresp"], b["rdata"])
            if go["aw"] and awr:
                aw.pop(0)
                ctx.set(b["awvalid"], 0)
            if go["w"] and wr:
                w.pop(0)
                ctx.set(b["wvalid"], 0)
            if go["ar"] and arr:
                ar.pop(0)
                ctx.set(b["arvalid"], 0)
            if bv and bready:
                got_b.append(bresp)
            if rv and rready:
                got_r.append((rresp, rdata))
            assert len(got_b) <= len(writes) - max(len(aw), len(w))
            assert len(got_r) <= len(reads) - len(ar)
        ctx.set(b["bready"], 0)
        ctx.set(b["rready"], 0)
        assert got_b == want_b
        assert got_r == want_r
        self.check_outputs("pipelined writes")

    async def core_load(self, value):
        self.ctx.set(self.dut.step_next, value)
        self.ctx.set(self.dut.step_load, 1)
        await self.tick()
        self.ctx.set(self.dut.step_load, 0)
        self.model.load("STEP", "step", value)
        self.check_outputs("core load")

    def finish(self):
        if self._run:
            self.run_lengths.append(self._run)
        assert self.observed == self.model.pulses
        assert all(n == 1 for n in self.run_lengths), f"pulse lengths {self.run_lengths}"


def simulate(dut, model, rng, body, *, idle=0.0, stall=0.0):
    """Run ``body(bench)`` in an Amaranth testbench; returns the bench."""
    result = {}

    async def testbench(ctx):
        bench = Bench(dut, ctx, model, rng, idle=idle, stall=stall)
        bench.drive_inputs()
        await body(bench)
        for _ in range(3):
            await bench.tick()
        bench.finish()
        result["bench"] = bench

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    return result["bench"]


SIM_BUILDS = [
    pytest.param(PYNQ_Z2, 12, id="pynq_z2"),
    pytest.param(Build(max_layers=1, lanes=32, max_width=64, max_fan_in=64), 9, id="l1-a9"),
    pytest.param(Build(max_layers=8, classes=16), 9, id="l8-a9"),
]


@pytest.mark.parametrize("build, addr_width", SIM_BUILDS)
def test_every_register(rng, build, addr_width):
    """Reset values, then each register written with a random word and read back, and
    every word of the address window read."""
    dut = AxiLiteRegisters(build=build, addr_width=addr_width)
    model = RegisterModel(dut.regmap, addr_width)
    model.randomize_inputs(rng)

    async def body(bench):
        bench.check_outputs("reset")
        for reg in dut.regmap:
            await bench.read(reg.offset)
        for reg in dut.regmap:
            await bench.write(reg.offset, int(rng.integers(1 << 32)))
            await bench.read(reg.offset)
        for addr in range(0, 1 << min(addr_width, 10), 4):
            await bench.read(addr)

    simulate(dut, model, rng, body)
    assert model.read(dut.regmap["ID"].offset) == (OKAY, 0x584E524C)


@pytest.mark.parametrize("build, addr_width", SIM_BUILDS)
@pytest.mark.parametrize("idle, stall", [(0.0, 0.0), (0.5, 0.5)])
def test_random(rng, build, addr_width, idle, stall):
    """Random reads, writes with random strobes, unmapped and unaligned addresses, core
    inputs changing between accesses, lock, hold, and core loads of STEP."""
    dut = AxiLiteRegisters(build=build, addr_width=addr_width)
    model = RegisterModel(dut.regmap, addr_width)
    addresses = random_addresses(rng, model, 400)

    async def body(bench):
        for addr in addresses:
            r = rng.random()
            if r < 0.1:
                model.randomize_inputs(rng)
                model.lock = int(rng.random() < 0.3)
                bench.drive_inputs()
            elif r < 0.15:
                await bench.core_load(int(rng.integers(1 << 32)))
            if rng.random() < 0.5:
                hold = int(rng.integers(1, 12)) if rng.random() < 0.1 else 0
                await bench.write(addr, int(rng.integers(1 << 32)), int(rng.integers(16)),
                                  hold=hold)
            else:
                await bench.read(addr)

    bench = simulate(dut, model, rng, body, idle=idle, stall=stall)
    assert model.pulses, "no pulse was exercised"
    if idle == stall == 0:
        assert bench.cycles <= 3 * 400 + 100 + 12 * 40  # 2 cycles a read, 3 a write, holds


@pytest.mark.parametrize("idle, stall", [(0.0, 0.0), (0.3, 0.6)])
def test_pipelined(rng, idle, stall):
    """Back-to-back writes (configuration registers) and reads (constants, core inputs,
    holes) at the same time, with stalls: every response in order and right."""
    dut = AxiLiteRegisters(build=PYNQ_Z2, addr_width=12)
    model = RegisterModel(dut.regmap, 12)
    writable = [r.offset for r in dut.regmap if r.access in (Access.RW, Access.W1P)]
    readable = [r.offset for r in dut.regmap if r.access in (Access.CONST, Access.RO)]
    readable += [0x018, 0x05C, 0x200, 0xFFC]
    pulsed = [r.offset for r in dut.regmap if r.access is Access.W1P]

    async def body(bench):
        for _ in range(20):
            model.randomize_inputs(rng)
            bench.drive_inputs()
            writes = [(int(rng.choice(writable)), int(rng.integers(1 << 32)),
                       int(rng.integers(16))) for _ in range(int(rng.integers(1, 12)))]
            reads = [int(rng.choice(readable)) for _ in range(int(rng.integers(1, 12)))]
            # At least one pulse register write with every bit set, wherever it falls.
            writes.insert(int(rng.integers(len(writes) + 1)), (int(rng.choice(pulsed)),
                                                              0xFFFF_FFFF, 0xF))
            await bench.pipelined(writes, reads)
            for reg in dut.regmap:
                if reg.access is Access.RW:
                    await bench.read(reg.offset)

    bench = simulate(dut, model, rng, body, idle=idle, stall=stall)
    assert model.pulses


def test_corners(rng):
    """Spelled out: SLVERR for holes, the window's end and read-only registers; byte
    strobes; w1p bits only when strobed; lock; a host write wins over a core load."""
    dut = AxiLiteRegisters(build=PYNQ_Z2, addr_width=12)
    model = RegisterModel(dut.regmap, 12)
    offs = dut.regmap.offsets()

    async def body(bench):
        ctx = bench.ctx
        for addr in (0x018, 0x03C, 0x05C, 0x0FC, 0x114, 0x154, 0xFFC):
            await bench.read(addr)
            assert model.read(addr) == (SLVERR, 0)
            await bench.write(addr, 0xFFFFFFFF)
        for name in ("ID", "BUILD0", "STATUS", "CYCLES_IO"):
            before = model.read(offs[name])
            await bench.write(offs[name], 0)
            await bench.read(offs[name])
            assert model.read(offs[name]) == before
        await bench.write(offs["KEY_1"], 0x11223344)
        await bench.write(offs["KEY_1"], 0xAABBCCDD, strb=0b0101)
        assert ctx.get(Value.cast(dut.key)) >> 32 & 0xFFFFFFFF == 0x11BB33DD
        await bench.write(offs["THRESH_0"] + 2, 0xFFFFFFFF, strb=0b0100)   # bit 16 only
        assert ctx.get(Value.cast(dut.thresh)) & 0x1FFFF == 0x10000
        await bench.write(offs["CONTROL"], 0x3, strb=0b1110)              # no pulse
        await bench.write(offs["CONTROL"], 0x2, strb=0b0001)
        await bench.read(offs["CONTROL"])
        assert model.read(offs["CONTROL"]) == (OKAY, 0)
        model.lock = 1
        bench.drive_inputs()
        await bench.write(offs["WIDTH_2"], 77)
        assert model.stored["WIDTH_2", "width"] == 0
        await bench.write(offs["CONTROL"], 0x1)                           # never locked
        model.lock = 0
        bench.drive_inputs()
        # Host write and core load of STEP in the same cycle: the host wins, and
        # step_written follows with the new value already on step.
        b = bench.bus
        ctx.set(b["awaddr"], offs["STEP"])
        ctx.set(b["wdata"], 0x1111)
        ctx.set(b["wstrb"], 0xF)
        ctx.set(b["awvalid"], 1)
        ctx.set(b["wvalid"], 1)
        ctx.set(b["bready"], 1)
        await bench.tick()
        ctx.set(b["awvalid"], 0)
        ctx.set(b["wvalid"], 0)
        ctx.set(dut.step_next, 0x2222)
        ctx.set(dut.step_load, 1)
        await bench.tick()                                                # write happens here
        ctx.set(dut.step_load, 0)
        assert (ctx.get(dut.step), ctx.get(dut.step_written)) == (0x1111, 1)
        bvalid, bresp = await bench.tick(b["bvalid"], b["bresp"])
        assert (bvalid, bresp) == (1, OKAY)
        ctx.set(b["bready"], 0)
        model.write(offs["STEP"], 0x1111, 0xF)
        assert ctx.get(dut.step) == 0x1111 and not ctx.get(dut.step_written)
        await bench.read(offs["STEP"])
        await bench.core_load(0x3333)
        await bench.read(offs["STEP"])

    bench = simulate(dut, model, rng, body)
    assert model.pulse_ports == ["soft_reset", "clear_error", "step_written", "locked_write"]
    assert bench.observed == [(0, 1, 0, 0), (0, 0, 0, 1), (1, 0, 0, 0), (0, 0, 1, 0)]


# -- cocotb -------------------------------------------------------------------------------------

# A Verilator build takes 20-40 s here, so the default run builds one design per simulator.
COCOTB_RUNS = [
    pytest.param("verilator", {"build": {}, "addr_width": 12, "cases": 2000}, id="verilator-pynq"),
    pytest.param("icarus", {"build": {"max_layers": 8}, "addr_width": 9, "cases": 1000},
                 id="icarus-l8-a9"),
    pytest.param("icarus", {"build": {}, "addr_width": 12, "cases": 600}, id="icarus-pynq",
                 marks=pytest.mark.slow),
    pytest.param("verilator", {"build": {"max_layers": 8}, "addr_width": 9, "cases": 2000},
                 id="verilator-l8-a9", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("simulator, params", COCOTB_RUNS)
def test_cocotb(simulator, params, build_root):
    build = Build(**params["build"])
    name = f"l{build.max_layers}_a{params['addr_width']}"
    run_cocotb(AxiLiteRegisters(build=build, addr_width=params["addr_width"]),
               name="axil_regs", test_module="xnorlearn.sim.tb_axil", simulator=simulator,
               build_dir=f"{build_root}/axil_{simulator}_{name}", params=params)
