# amaranth: UnusedElaboratable=no
"""cocotb bench of :class:`xnorlearn.hw.axil.AxiLiteRegisters`, driven by cocotbext-axi.

Parameters (from :func:`xnorlearn.sim.runner.tb_params`): ``build`` (keyword
arguments of :class:`~xnorlearn.contract.Build`), ``addr_width``, and ``cases``
(random bus operations per random test). The bench rebuilds the register map from
them and checks it against the DUT's port widths.

:class:`RegisterModel` (also used by the Amaranth-simulation tests) predicts every
response, read word, ``Out`` port value and strobe pulse from the register map alone.
"""


import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly, RisingEdge, with_timeout
from cocotbext.axi import AxiLiteBus, AxiLiteMaster

from xnorlearn.contract import Access, Build, RegisterMap
from xnorlearn.sim.runner import tb_params
from xnorlearn.sim.streams import case_rng, record_cases

__all__ = ["RegisterModel", "split_access", "random_addresses", "TB"]

OKAY, SLVERR = 0, 2


class RegisterModel:
    """What the register file should do, from the register map alone.

    Port values are plain integers, a per-layer port flattened with layer ``l`` at
    bits ``l * width`` (as the Verilog port is).

    Attributes
    ----------
    stored : dict
        ``(register, field) -> value`` of the ``rw``/``rwl`` fields.
    inputs : dict
        ``(register, field) -> value`` the core drives on the ``ro`` fields.
    lock : int
        The ``lock`` input.
    pulses : list of tuple
        Expected pulse events, in order: one tuple of :attr:`pulse_ports` values per
        cycle in which any of them is nonzero.
    """

    def __init__(self, regmap, addr_width):
        self.regmap = regmap
        self.addr_width = addr_width
        self.by_word = {reg.offset >> 2: reg for reg in regmap}
        self.stored = {}
        self.inputs = {}
        self.out_ports, self.in_ports = {}, {}     # port -> [(register, field)] by layer
        self.pulse_ports = []
        for reg in regmap:
            for f in reg.fields:
                key = (reg.name, f.name)
                if reg.access.stored:
                    self.stored[key] = f.reset
                    self.out_ports.setdefault(f.name, []).append((key, f.width))
                elif reg.access is Access.RO:
                    self.inputs[key] = 0
                    self.in_ports.setdefault(f.name, []).append((key, f.width))
                elif reg.access is Access.W1P:
                    self.pulse_ports.append(f.name)
        self.pulse_ports += [f"{f.name}_written" for reg in regmap if reg.access is Access.RWL
                             for f in reg.fields]
        self.pulse_ports.append("locked_write")
        self.lock = 0
        self.pulses = []

    def _reg(self, addr):
        return self.by_word.get((addr % (1 << self.addr_width)) >> 2)

    def word(self, reg):
        """The word register ``reg`` reads now."""
        if reg.access is Access.CONST:
            return self.regmap.const_value(reg.name)
        value = 0
        for f in reg.fields:
            if reg.access.stored:
                value |= self.stored[reg.name, f.name] << f.lsb
            elif reg.access is Access.RO:
                value |= self.inputs[reg.name, f.name] << f.lsb
        return value

    def read(self, addr):
        """``(resp, data)`` of a read of ``addr``."""
        reg = self._reg(addr)
        return (SLVERR, 0) if reg is None else (OKAY, self.word(reg))

    def write(self, addr, data, strb):
        """Apply a write; return its response."""
        reg = self._reg(addr)
        if reg is None or not reg.access.writable:
            return SLVERR
        mask = sum(0xFF << (8 * i) for i in range(4) if strb >> i & 1)
        event = dict.fromkeys(self.pulse_ports, 0)
        if reg.access is Access.W1P:
            for f in reg.fields:
                event[f.name] = (data & mask & f.mask) >> f.lsb
        elif self.lock:
            event["locked_write"] = 1
        else:
            merged = (self.word(reg) & ~mask) | (data & mask)
            for f in reg.fields:
                self.stored[reg.name, f.name] = (merged & f.mask) >> f.lsb
                if reg.access is Access.RWL:
                    event[f"{f.name}_written"] = 1
        if any(event.values()):
            self.pulses.append(tuple(event.values()))
        return OKAY

    def load(self, register, field, value):
        """The core loads an ``rwl`` field."""
        self.stored[register, field] = value

    def _flatten(self, entries, values):
        value, pos = 0, 0
        for key, width in entries:
            value |= values[key] << pos
            pos += width
        return value

    def out_values(self):
        """``{port: value}`` of the ``Out`` ports of stored fields."""
        return {p: self._flatten(e, self.stored) for p, e in self.out_ports.items()}

    def in_values(self):
        """``{port: value}`` to drive on the ``In`` ports of ``ro`` fields."""
        return {p: self._flatten(e, self.inputs) for p, e in self.in_ports.items()}

    def randomize_inputs(self, rng):
        for reg in self.regmap:
            if reg.access is Access.RO:
                for f in reg.fields:
                    self.inputs[reg.name, f.name] = int(rng.integers(1 << f.width))

    def port_width(self, port):
        entries = self.out_ports.get(port) or self.in_ports.get(port)
        return sum(w for _, w in entries)


def split_access(addr, length):
    """The bus words of a byte access, as cocotbext-axi makes them:
    ``[(word address, strobe, first byte index, byte count)]``."""
    words = []
    pos = 0
    while pos < length:
        a = addr + pos
        first = a % 4
        count = min(4 - first, length - pos)
        words.append((a - first, ((1 << count) - 1) << first, first, count))
        pos += count
    return words


def random_addresses(rng, model, n):
    """``n`` byte addresses: mostly registers (any byte of them), some unmapped words
    of the window."""
    mapped = [reg.offset for reg in model.regmap]
    window = 1 << model.addr_width
    out = []
    for _ in range(n):
        if rng.random() < 0.8:
            base = mapped[int(rng.integers(len(mapped)))]
        else:
            base = int(rng.integers(window // 4)) * 4
        out.append(base + int(rng.integers(4)) * (rng.random() < 0.3))
    return out


def _pause(rng, p):
    while True:
        yield bool(rng.random() < p)


class TB:
    """Clock, reset, a cocotbext-axi master, the core-side ports and a pulse monitor."""

    def __init__(self, dut, *, test_name, idle=0.0, backpressure=0.0):
        self.dut = dut
        self.params = tb_params()
        self.build = Build(**self.params.get("build", {}))
        self.addr_width = self.params.get("addr_width", 12)
        self.regmap = RegisterMap(self.build)
        self.model = RegisterModel(self.regmap, self.addr_width)
        if len(dut.s_axil_awaddr) != self.addr_width:
            raise AssertionError(f"DUT address is {len(dut.s_axil_awaddr)} bits, "
                                 f"parameters give {self.addr_width}")
        for port in list(self.model.out_ports) + list(self.model.in_ports):
            if len(getattr(dut, port)) != self.model.port_width(port):
                raise AssertionError(f"DUT port {port} is {len(getattr(dut, port))} bits, "
                                     f"build {self.build} gives {self.model.port_width(port)}")
        self.rng = case_rng(test_name, self.params)
        self.checked = 0
        self.observed = []          # pulse events seen by the monitor
        self.pulse_lengths = []
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
        if idle:
            for ch in (self.axil.write_if.aw_channel, self.axil.write_if.w_channel,
                       self.axil.read_if.ar_channel):
                ch.set_pause_generator(_pause(self.rng, idle))
        if backpressure:
            for ch in (self.axil.write_if.b_channel, self.axil.read_if.r_channel):
                ch.set_pause_generator(_pause(self.rng, backpressure))
        dut.lock.value = 0
        dut.hold.value = 0
        dut.step_load.value = 0
        dut.step_next.value = 0
        self.drive_inputs()
        self._monitor = cocotb.start_soon(self._watch_pulses())

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 3)
        await FallingEdge(self.dut.clk)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, 2)

    def drive_inputs(self):
        for port, value in self.model.in_values().items():
            getattr(self.dut, port).value = value
        self.dut.lock.value = self.model.lock

    async def _watch_pulses(self):
        run = 0
        while True:
            await RisingEdge(self.dut.clk)
            await ReadOnly()
            event = tuple(int(getattr(self.dut, p).value) for p in self.model.pulse_ports)
            if any(event) and not self.dut.rst.value:
                self.observed.append(event)
                run += 1
            elif run:
                self.pulse_lengths.append(run)
                run = 0

    def check_outputs(self, what):
        for port, want in self.model.out_values().items():
            got = int(getattr(self.dut, port).value)
            assert got == want, f"after {what}: port {port} = {got:#x}, expected {want:#x}"

    async def _bounded(self, coro, words):
        # A lost response would otherwise hang the test until its (long) timeout.
        return await with_timeout(coro, 2000 + 200 * words, "ns")

    async def access(self, op, addr, length, payload=None):
        """One bus access (``op`` "read" or "write" of ``length`` bytes), checked."""
        words = split_access(addr, length)
        if op == "write":
            want_resp, pos = OKAY, 0
            for word_addr, strb, first, count in words:
                word = int.from_bytes(bytes(first) + payload[pos:pos + count], "little")
                pos += count
                r = self.model.write(word_addr, word, strb)
                want_resp = r if r != OKAY else want_resp
            got = await self._bounded(self.axil.write(addr, payload), len(words))
            assert got.resp == want_resp, (f"write {addr:#x} +{length}: resp {got.resp}, "
                                           f"expected {want_resp}")
            self.check_outputs(f"write {addr:#x}")
        else:
            want_resp, want = OKAY, b""
            for word_addr, strb, first, count in words:
                r, word = self.model.read(word_addr)
                want_resp = r if r != OKAY else want_resp
                want += word.to_bytes(4, "little")[first:first + count]
            got = await self._bounded(self.axil.read(addr, length), len(words))
            assert got.resp == want_resp, (f"read {addr:#x} +{length}: resp {got.resp}, "
                                           f"expected {want_resp}")
            assert got.data == want, (f"read {addr:#x} +{length}: {got.data.hex()}, "
                                      f"expected {want.hex()}")
        self.checked += len(words)

    async def core_load_step(self, value):
        await FallingEdge(self.dut.clk)
        self.dut.step_next.value = value
        self.dut.step_load.value = 1
        await FallingEdge(self.dut.clk)
        self.dut.step_load.value = 0
        self.model.load("STEP", "step", value)
        await ReadOnly()
        self.check_outputs("core load of STEP")

    async def finish(self, test_name):
        await ClockCycles(self.dut.clk, 4)
        self._monitor.cancel()
        assert self.observed == self.model.pulses, (
            f"pulses {self.observed[:8]}... ({len(self.observed)}), expected "
            f"{self.model.pulses[:8]}... ({len(self.model.pulses)})")
        assert all(n == 1 for n in self.pulse_lengths), f"pulse lengths {self.pulse_lengths}"
        record_cases(self.dut, test_name, self.checked, pulses=len(self.observed),
                     max_layers=self.build.max_layers, addr_width=self.addr_width)


@cocotb.test(timeout_time=2, timeout_unit="ms")
async def test_reset_and_every_register(dut):
    """After reset: constants, reset values and core inputs read back; then each
    register written with a random word and the whole window read back."""
    tb = TB(dut, test_name="test_reset_and_every_register")
    tb.model.randomize_inputs(tb.rng)
    tb.drive_inputs()
    await tb.reset()
    tb.check_outputs("reset")
    for reg in tb.regmap:
        await tb.access("read", reg.offset, 4)
    assert tb.regmap.const_value("ID") == 0x584E524C
    for reg in tb.regmap:
        payload = bytes(tb.rng.integers(256, size=4, dtype="u1"))
        await tb.access("write", reg.offset, 4, payload)
    # One read of the whole map: back-to-back ARs, holes answer SLVERR.
    await tb.access("read", 0, tb.regmap.span)
    await tb.finish("test_reset_and_every_register")


async def _random(dut, test_name, *, idle, backpressure):
    tb = TB(dut, test_name=test_name, idle=idle, backpressure=backpressure)
    await tb.reset()
    cases = tb.params.get("cases", 400)
    for addr in random_addresses(tb.rng, tb.model, cases):
        r = tb.rng.random()
        if r < 0.1:
            tb.model.randomize_inputs(tb.rng)
            tb.model.lock = int(tb.rng.random() < 0.3)
            tb.drive_inputs()
        elif r < 0.15:
            await tb.core_load_step(int(tb.rng.integers(1 << 32)))
        length = int(tb.rng.choice([1, 2, 3, 4, 4, 4, 8, 12])) if addr % 4 == 0 or \
            tb.rng.random() < 0.5 else 4 - addr % 4
        length = min(length, (1 << tb.addr_width) - addr)     # the master refuses to wrap
        if tb.rng.random() < 0.5:
            payload = bytes(tb.rng.integers(256, size=length, dtype="u1"))
            await tb.access("write", addr, length, payload)
        else:
            await tb.access("read", addr, length)
    await tb.finish(test_name)


@cocotb.test(timeout_time=1, timeout_unit="ms")
async def test_random(dut):
    """Random reads and writes (partial, multi-word, unmapped), core inputs, lock and
    STEP loads, bus without pauses."""
    await _random(dut, "test_random", idle=0.0, backpressure=0.0)


@cocotb.test(timeout_time=2, timeout_unit="ms")
async def test_random_idle_and_backpressure(dut):
    """As test_random, with idle cycles on AW/W/AR and backpressure on B/R."""
    await _random(dut, "test_random_idle_and_backpressure", idle=0.4, backpressure=0.5)


@cocotb.test(timeout_time=2, timeout_unit="ms")
async def test_strobes(dut):
    """CONTROL: each bit pulses its port for exactly one cycle, only where written as 1
    and strobed; a locked configuration write pulses locked_write and changes nothing;
    a STEP write pulses step_written; a core load of STEP."""
    tb = TB(dut, test_name="test_strobes")
    await tb.reset()
    control = tb.regmap["CONTROL"].offset
    for value in (1, 2, 3, 0, 0xFFFFFFFF):
        await tb.access("write", control, 4, value.to_bytes(4, "little"))
    await tb.access("write", control + 1, 3, b"\xff\xff\xff")    # byte 0 not strobed
    await tb.access("read", control, 4)
    tb.model.lock = 1
    tb.drive_inputs()
    for name in ("LAYERS", "STEP", f"KEY_{tb.build.max_layers - 1}"):
        await tb.access("write", tb.regmap[name].offset, 4, b"\x5a\xa5\x3c\xc3")
    tb.model.lock = 0
    tb.drive_inputs()
    await tb.access("write", tb.regmap["LAYERS"].offset, 4, b"\x03\x00\x00\x00")
    await tb.access("write", tb.regmap["STEP"].offset + 1, 1, b"\x77")
    await tb.core_load_step(0x12345678)
    await tb.access("read", tb.regmap["STEP"].offset, 4)
    await tb.finish("test_strobes")
    # Spelled out, independently of the model.
    assert tb.model.pulse_ports == ["soft_reset", "clear_error", "step_written", "locked_write"]
    assert tb.observed == ([(1, 0, 0, 0), (0, 1, 0, 0), (1, 1, 0, 0), (1, 1, 0, 0)]
                           + [(0, 0, 0, 1)] * 3 + [(0, 0, 1, 0)])
    assert tb.model.stored["LAYERS", "layers"] == 3
    assert tb.model.stored["STEP", "step"] == 0x12345678


@cocotb.test(timeout_time=1, timeout_unit="ms")
async def test_concurrent(dut):
    """Multi-word writes of the per-layer block and reads of the rest in flight at the
    same time (the master pipelines the words of each), with idle cycles and
    backpressure; the two never touch the same register."""
    tb = TB(dut, test_name="test_concurrent", idle=0.3, backpressure=0.3)
    await tb.reset()
    first_layer = min(r.offset for r in tb.regmap if r.per_layer)
    for _ in range(tb.params.get("cases", 400) // 40 + 1):
        tb.model.randomize_inputs(tb.rng)
        tb.drive_inputs()
        start = first_layer + 4 * int(tb.rng.integers(8))
        length = 4 * int(tb.rng.integers(1, (tb.regmap.span - start) // 4 + 1))
        payload = bytes(tb.rng.integers(256, size=length, dtype="u1"))
        write = cocotb.start_soon(tb.access("write", start, length, payload))
        read = cocotb.start_soon(tb.access("read", 4 * int(tb.rng.integers(4)),
                                           4 * int(tb.rng.integers(8, first_layer // 4 - 3))))
        await write
        await read
        await tb.access("read", first_layer, tb.regmap.span - first_layer)
    await tb.finish("test_concurrent")
