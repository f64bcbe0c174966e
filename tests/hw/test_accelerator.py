# amaranth: UnusedElaboratable=no
"""The accelerator top level: parameters, ports, the wrapper's own logic in amaranth.sim,
and the cocotb regression against the golden model (:mod:`xnorlearn.sim.tb_accel`)."""

import dataclasses
import json
import re
from pathlib import Path

import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator

from xnorlearn.hw.accelerator import Accelerator, AxiStreamSignature, core_parameters
from xnorlearn.hw.axil import AxiLiteSignature
from xnorlearn.contract import Build, ErrorCode, Phase, RegisterMap
from xnorlearn.sim.runner import run_cocotb
from xnorlearn.sim.runner import VERILATOR_ARGS
from xnorlearn.sw import protocol

TINY = Build(lanes=32, max_layers=2, max_width=8, max_fan_in=8, classes=3, max_batch=2,
             max_groups=4, draw_lanes=16)


# -- parameters and ports ----------------------------------------------------------------------

def test_parameters():
    acc = Accelerator(build=TINY)
    assert acc.build is TINY and acc.addr_width == 12
    with pytest.raises(AttributeError):
        acc.build = Build()
    assert acc.signature.members["s_axil"].signature == AxiLiteSignature(addr_width=12)
    assert acc.signature.members["s_axis"].signature == AxiStreamSignature()
    with pytest.raises(TypeError, match=r"build must be a xnorlearn.contract.Build, got 3"):
        Accelerator(build=3)
    with pytest.raises(TypeError):
        Accelerator(TINY)                   # keyword-only
    assert Accelerator(build=Build(lanes=96, draw_lanes=32)).build.lanes == 96
    with pytest.raises(ValueError, match=r"draw_lanes must be a power of two dividing lanes, "
                                         r"at least 2, got 12"):
        Accelerator(build=Build(lanes=96, draw_lanes=12))
    with pytest.raises(ValueError, match=r"z_bits must be None .*, got 8"):
        Accelerator(build=dataclasses.replace(TINY, z_bits=8))
    with pytest.raises(ValueError, match=r"max_width must be 2..4095, got 1; draw_lanes must "
                                         r"be a power of two dividing lanes, at least 2, got 1"):
        core_parameters(dataclasses.replace(TINY, max_width=1, draw_lanes=1))
    with pytest.raises(ValueError, match=r"data_width must be a multiple of 8, got 12"):
        AxiStreamSignature(data_width=12)


def test_verilog_ports():
    text = verilog.convert(Accelerator(build=TINY), name="top", emit_src=False)
    expected = {"clk", "rst"}
    expected |= {f"s_axis__{n}" for n in ("tdata", "tvalid", "tready", "tlast")}
    expected |= {f"m_axis__{n}" for n in ("tdata", "tvalid", "tready", "tlast")}
    expected |= {f"s_axil__{n}" for n in AxiLiteSignature(addr_width=12).members}
    top = text[text.index("module top"):]
    top = top[:top.index("endmodule")]
    found = set(re.findall(r"^\s*(?:input|output)\s+(?:\[\d+:0\]\s+)?(\w+);", top, re.M))
    assert found == expected


# -- the wrapper's logic in amaranth.sim ---------------------------------------------------------

class _Host:
    """AXI4-Lite and AXI4-Stream driver for amaranth.sim."""

    def __init__(self, dut, ctx):
        self.dut, self.ctx = dut, ctx
        self.regs = RegisterMap(dut.build)

    async def write(self, name, value):
        bus, ctx = self.dut.s_axil, self.ctx
        ctx.set(bus.awaddr, self.regs[name].offset)
        ctx.set(bus.wdata, value)
        ctx.set(bus.wstrb, 0xF)
        ctx.set(bus.awvalid, 1)
        ctx.set(bus.wvalid, 1)
        ctx.set(bus.bready, 1)
        await ctx.tick().until(bus.awready & bus.wready)
        ctx.set(bus.awvalid, 0)
        ctx.set(bus.wvalid, 0)
        for _ in range(10):
            if ctx.get(bus.bvalid):
                break
            await ctx.tick()
        assert ctx.get(bus.bvalid) and ctx.get(bus.bresp) == 0
        await ctx.tick()
        ctx.set(bus.bready, 0)

    async def read(self, name):
        bus, ctx = self.dut.s_axil, self.ctx
        ctx.set(bus.araddr, self.regs[name].offset)
        ctx.set(bus.arvalid, 1)
        ctx.set(bus.rready, 1)
        await ctx.tick().until(bus.arready)
        ctx.set(bus.arvalid, 0)
        for _ in range(10):
            if ctx.get(bus.rvalid):
                break
            await ctx.tick()
        assert ctx.get(bus.rvalid) and ctx.get(bus.rresp) == 0
        value = ctx.get(bus.rdata)
        await ctx.tick()
        ctx.set(bus.rready, 0)
        return value

    async def status(self):
        st = self.regs.decode("STATUS", await self.read("STATUS"))
        st["error_code"] = await self.read("ERROR_CODE")
        return st

    async def send_word(self, word, last, max_cycles=50):
        s, ctx = self.dut.s_axis, self.ctx
        ctx.set(s.tdata, int(word))
        ctx.set(s.tlast, last)
        ctx.set(s.tvalid, 1)
        for _ in range(max_cycles):
            _, _, ready = await ctx.tick().sample(s.tready)
            if ready:
                ctx.set(s.tvalid, 0)
                return True
        ctx.set(s.tvalid, 0)
        return False


def test_wrapper_logic():
    """Identity, STEP written and mirrored, out-of-port values refused as CONFIG, the
    locked write latching BUSY (merged into STATUS/ERROR_CODE and holding the next
    packet back), clear_error."""
    dut = Accelerator(build=TINY)
    regs = RegisterMap(TINY)
    log = []

    async def bench(ctx):
        host = _Host(dut, ctx)
        ctx.set(dut.m_axis.tready, 1)
        for name in ("ID", "VERSION", "BUILD0", "BUILD1", "BUILD2", "BUILD3"):
            assert await host.read(name) == regs.const_value(name), name
        await host.write("STEP", 0x12345678)
        await ctx.tick().repeat(3)
        assert await host.read("STEP") == 0x12345678
        # A LAYERS value beyond the core's 2-bit port is refused, not truncated to 1.
        await host.write("LAYERS", 5)
        await host.write("INPUTS", 8)
        await host.write("WIDTH_0", 4)
        await host.write("GAMMA_0", 1)
        assert await host.send_word(protocol.read_p_packet(0, 4)[0], 1)
        await ctx.tick().repeat(3)
        st = await host.status()
        assert st["error"] and st["error_code"] == ErrorCode.CONFIG, st
        await host.write("CONTROL", regs.encode("CONTROL", clear_error=1))
        await host.write("LAYERS", 1)
        assert (await host.status())["error"] == 0
        log.append("config")
        # A WRITE_P packet left half done keeps the core busy: a write is locked out.
        assert await host.send_word(protocol.encode_header(protocol.Opcode.WRITE_P, 0, 4), 0)
        assert await host.send_word(1, 0)
        st = await host.status()
        assert st["busy"] and st["phase"] == Phase.IO, st
        await host.write("WIDTH_0", 7)
        assert await host.read("WIDTH_0") == 4
        st = await host.status()
        assert st["error"] and st["error_code"] == ErrorCode.BUSY and st["busy"], st
        for word, last in ((2, 0), (3, 0), (4, 1)):   # the packet itself completes
            assert await host.send_word(word, last)
        st = await host.status()
        assert st == {"busy": 0, "error": 1, "reinforcing": 0, "phase": Phase.ERROR,
                      "error_code": ErrorCode.BUSY}, st
        assert not await host.send_word(protocol.read_p_packet(0, 4)[0], 1, max_cycles=30)
        await host.write("CONTROL", regs.encode("CONTROL", clear_error=1))
        assert (await host.status())["error"] == 0
        assert await host.send_word(protocol.read_p_packet(0, 4)[0], 1)
        words = []
        for _ in range(40):
            _, _, valid, data, last = await ctx.tick().sample(
                dut.m_axis.tvalid, dut.m_axis.tdata, dut.m_axis.tlast)
            if valid:
                words.append(data)
                if last:
                    break
        assert words == [1, 2, 3, 4]
        log.append("busy")
        # soft_reset: counters and STEP cleared, STEP mirrors the core.
        await host.write("CONTROL", regs.encode("CONTROL", soft_reset=1))
        await ctx.tick().repeat(2)
        assert await host.read("STEP") == 0
        log.append("soft_reset")

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert log == ["config", "busy", "soft_reset"]


# -- cocotb regression --------------------------------------------------------------------------

#: Default run: one small build per simulator (Icarus is slow on the core's wide words, so
#: its build is the narrower one; its forward pass takes 4 patterns at once), and a build of
#: 96 lanes (every width past one word; on Icarus, over an hour, under ``slow``);
#: ``slow``: the full ranges (widths 8..200, batches 1..128,
#: classes 2 and 16).
BUILDS = {
    "c10_p64": (Build(lanes=64, max_layers=3, max_width=48, max_fan_in=72, classes=10,
                      max_batch=16, max_groups=8, draw_lanes=16),
                dict(networks=3, batches=2, widths=[8, 48], batch=16)),
    "c3_p32": (Build(lanes=32, max_layers=2, max_width=24, max_fan_in=40, classes=3,
                     max_batch=6, max_groups=6, draw_lanes=16, fwd_patterns=4),
               dict(networks=2, batches=2, widths=[8, 24], batch=6)),
    # Lanes not a power of two; widths across two words of 96 (inputs and outputs).
    "c4_p96": (Build(lanes=96, max_layers=2, max_width=110, max_fan_in=120, classes=4,
                     max_batch=8, max_groups=16, draw_lanes=32, fwd_patterns=3),
               dict(networks=2, batches=2, widths=[97, 110], batch=8, host_timeout_s=900)),
    "c16_p32_wide": (Build(lanes=32, max_layers=3, max_width=200, max_fan_in=200,
                           classes=16, max_batch=128, max_groups=16, draw_lanes=16),
                     dict(networks=12, batches=3, widths=[8, 200], batch=128,
                          timeout_ms=20_000)),
    "c2_p64_wide": (Build(lanes=64, max_layers=3, max_width=200, max_fan_in=200,
                          classes=2, max_batch=128, max_groups=25, draw_lanes=32,
                          fwd_patterns=5),
                    dict(networks=12, batches=3, widths=[8, 200], batch=128,
                         timeout_ms=20_000)),
}


def _run(build_root, name, simulator):
    build, params = BUILDS[name]
    build_dir = Path(build_root) / f"accel_{name}_{simulator}"
    run_cocotb(Accelerator(build=build), name="xnorlearn_accelerator",
               test_module="xnorlearn.sim.tb_accel", simulator=simulator,
               build_dir=build_dir, params={"build": dataclasses.asdict(build), **params},
               extra_build_args=VERILATOR_ARGS if simulator == "verilator" else ())
    cases = json.loads((build_dir / "cases.json").read_text())
    print(f"{name} on {simulator}: {cases['networks']} networks, {cases['minibatches']} "
          f"minibatches, {cases['bad_inputs']} bad inputs, {cases['soft_resets']} soft resets")
    assert cases["networks"] >= 1 and cases["bad_inputs"] >= 20
    return cases


@pytest.mark.parametrize("name, simulator", [("c10_p64", "verilator"), ("c3_p32", "icarus"),
                                             ("c4_p96", "verilator")])
def test_accelerator_cocotb(build_root, name, simulator):
    _run(build_root, name, simulator)


@pytest.mark.slow
@pytest.mark.parametrize("name, simulator", [
    ("c16_p32_wide", "verilator"), ("c2_p64_wide", "verilator"), ("c10_p64", "icarus"),
    ("c4_p96", "icarus")])
def test_accelerator_cocotb_many(build_root, name, simulator):
    _run(build_root, name, simulator)
