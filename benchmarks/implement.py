"""Implementation figures of the training core: ECP5 place and route, xc7 synthesis.

Usage::

    # ULX3S-85F: synth_ecp5 + nextpnr-ecp5 at 80 MHz (--freq), the ulx3s-85f preset
    # (160 lanes, 10 patterns at once; on the board it routes at 50.10 MHz,
    # docs/ulx3s.md, so --freq 45 suits it)
    python benchmarks/implement.py ecp5

    # PYNQ-Z2 (xc7z020): synth_xilinx only (no open place and route for 7-series), the
    # pynq-z2 preset; build parameters override a preset's
    python benchmarks/implement.py xc7 [--preset pynq-z2] [--lanes 128 ...]

    # Markdown table of every result under build/impl
    python benchmarks/implement.py report

The design is the accelerator (``xnorlearn.hw.accelerator.Accelerator``: core, AXI4-Lite
register file and AXI4-Stream ports) when that module exists and elaborates, otherwise
the bare ``TrainerCore`` (``--top`` chooses). For place and route it sits inside
:class:`xnorlearn.boards.synth.ScanWrapper`, which reaches every port through scan chains
(six pins, ``constraints/ulx3s_scan.lpf``): the core has several hundred port bits, more
than the 205 user pins of the CABGA381 package, and ports left dangling would let
synthesis remove the logic behind them. With every port registered at the wrapper,
Fmax is that of the design's own register-to-register paths.

Multipliers beyond the device's DSP blocks are built in logic (``--dsp-limit``, default
the device's count; see :func:`xnorlearn.boards.synth.mark_soft_multipliers`).

Each run writes ``result.json`` into its work directory (``build/impl/<name>``), with
the build parameters, tool versions, resource counts, Fmax, critical paths and the time
of every step.
"""

import argparse
import dataclasses
import datetime
import json
import shlex
import shutil
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from amaranth.back import rtlil, verilog  # noqa: E402
from amaranth.hdl import Value  # noqa: E402
from amaranth.lib.wiring import In  # noqa: E402

from xnorlearn.contract import PRESETS, preset  # noqa: E402
from xnorlearn.boards.synth import (DEVICES, ScanWrapper, SynthError, nextpnr_version,  # noqa: E402
                                place_and_route_ecp5, synthesize_verilog, utilisation,
                                yosys_version)

LPF = ROOT / "constraints" / "ulx3s_scan.lpf"

#: Cycles of one 784-135-135 minibatch of 100 Fashion-MNIST patterns at 64 lanes, on the
#: whole accelerator (stream I/O included), as measured by ``xnorlearn verify --hidden 135
#: 135 --lanes 64 --batch-size 100 --dataset fashion-mnist`` (``benchmarks/core_cycles.py``
#: measures 218,199 on the bare core). Override with ``--cycles``.
CYCLES_PER_MINIBATCH = 218_215
MINIBATCH = 100

BUILD_ARGS = ("lanes", "max_layers", "max_width", "max_fan_in", "classes", "max_batch",
              "max_groups", "weight_words", "h_bits", "draw_lanes", "fwd_patterns")


def core_params(build):
    """Keyword arguments of :class:`~xnorlearn.hw.core.TrainerCore` for ``build``."""
    return {name: getattr(build, name) for name in BUILD_ARGS}


def make_top(build, top):
    """The design for ``build``: ``("accelerator" | "core", component)``.

    ``top="auto"`` takes the accelerator when ``xnorlearn.hw.accelerator`` imports,
    the bare core otherwise.
    """
    if top in ("auto", "accelerator"):
        try:
            from xnorlearn.hw.accelerator import Accelerator
        except ImportError:
            if top == "accelerator":
                raise
        else:
            return "accelerator", Accelerator(build=build)
    from xnorlearn.hw.core import TrainerCore
    return "core", TrainerCore(**core_params(build))


def export(build, top, wrap, language="rtlil"):
    """RTLIL or Verilog of the design (wrapped or not); falls back to the core when
    ``top="auto"`` and the accelerator does not elaborate."""
    backend = rtlil if language == "rtlil" else verilog
    kind, design = make_top(build, top)
    start = time.monotonic()
    try:
        text = backend.convert(ScanWrapper(design) if wrap else design, name="top")
    except Exception:
        if top != "auto" or kind == "core":
            raise
        print("the accelerator does not elaborate; using the bare core:", file=sys.stderr)
        traceback.print_exc()
        kind, design = make_top(build, "core")
        start = time.monotonic()
        text = backend.convert(ScanWrapper(design) if wrap else design, name="top")
    info = {"top": kind, "design": type(design).__name__, "wrapped": wrap,
            "convert_seconds": time.monotonic() - start}
    if wrap:
        bits = {False: 0, True: 0}
        for _path, member, value in design.signature.flatten(design):
            bits[member.flow == In] += len(Value.cast(value))
        info.update(scan_input_bits=bits[True], scan_output_bits=bits[False])
    return text, info


def build_name(family, build, extra=""):
    parts = [family, f"P{build.lanes}", f"L{build.max_layers}", f"W{build.max_width}",
             f"K{build.max_fan_in}", f"B{build.max_batch}", f"G{build.max_groups}",
             f"H{build.weight_words}", f"D{build.draw_lanes}", f"F{build.fwd_patterns}"]
    return "-".join(parts) + (f"-{extra}" if extra else "")


def throughput(fmax_mhz, cycles=CYCLES_PER_MINIBATCH):
    """Training samples per second at ``fmax_mhz``, ``cycles`` per minibatch of 100."""
    return fmax_mhz * 1e6 / cycles * MINIBATCH


def _summary(result):
    s = result["synth"]
    lines = [f"{result['name']}: {result['top']} ({result['design']})",
             f"  synth {s['seconds']:.0f} s: LUTs {s['luts']}, LUT sites {s['lut_sites']}, "
             f"FFs {s['ffs']}, BRAM18 {s['bram']}, DSP {s['dsp']} "
             f"({s.get('soft_multipliers', 0)} multipliers in logic)"]
    u = result["fit"]
    lines.append("  of " + result["device"] + ": " + ", ".join(
        f"{k} {100 * u[k]:.1f}%" for k in ("luts", "ffs", "bram", "dsp"))
        + f" -> {'fits' if u['fits'] else 'DOES NOT FIT'}")
    p = result.get("pnr")
    if p and p.get("fmax_mhz") is None:
        lines.append(f"  nextpnr {p['seconds']:.0f} s: not routed, so no report timing (log: "
                     f"{p.get('log_fmax_mhz') or '-'} MHz)")
    elif p:
        lines.append(f"  nextpnr {p['seconds']:.0f} s: Fmax {p['fmax_mhz']:.2f} MHz "
                     f"(target {result['freq']:g}); " + ", ".join(
                         f"{k} {v['used']}/{v['available']}" for k, v in p["used"].items()))
        paths = [cp for cp in p["critical_paths"] if cp["clocked"]]
        for cp in paths[:1]:
            lines.append(f"  critical path {cp['delay_ns']:.2f} ns "
                         f"(logic {cp['logic']:.2f}, routing {cp['routing']:.2f}): "
                         f"{cp['start']} ({cp['start_net']}) -> {cp['end']} ({cp['end_net']})")
            if cp["sources"]:
                lines.append("    sources: " + ", ".join(cp["sources"]))
    elif result.get("pnr_error"):
        lines.append(f"  nextpnr failed: {result['pnr_error']}")
    return "\n".join(lines)


def run(args, family):
    build = _build(args)
    device = args.device
    cap = DEVICES[device]
    dsp_limit = None if args.dsp_limit == "none" else (
        cap["dsp"] if args.dsp_limit is None else int(args.dsp_limit))
    name = args.name or build_name(family, build, args.tag)
    work = Path(args.work_dir) / name
    work.mkdir(parents=True, exist_ok=True)
    wrap = family == "ecp5" if args.wrap is None else args.wrap

    result = {"name": name, "family": family, "device": device,
              "build": dataclasses.asdict(build), "date": datetime.date.today().isoformat(),
              "synth_args": args.synth_args, "dsp_limit": dsp_limit,
              "tools": {"yosys": yosys_version()}}
    text, info = export(build, args.top, wrap, args.language)
    result.update(info, language=args.language)
    print(f"{name}: {info['top']} exported to {args.language} in "
          f"{info['convert_seconds']:.1f} s ({len(text) // 1024} KiB)", flush=True)
    extra = ["write_json top.json"] if family == "ecp5" and not args.skip_pnr else []
    try:
        synth = synthesize_verilog(text, family=family, top="top", work_dir=work,
                                   timeout=args.synth_timeout, synth_args=args.synth_args,
                                   extra_commands=extra, dsp_limit=dsp_limit,
                                   language=args.language)
    except SynthError as e:
        if args.language != "rtlil" or "Assert" not in str(e):
            raise
        # Yosys 0.70's ABC9 reintegration has failed an assertion on the RTLIL of the
        # accelerator that it passes on the same design's Verilog: retry that way.
        print(f"  {e}\n  retrying with Verilog", file=sys.stderr, flush=True)
        result["rtlil_error"] = str(e)
        text, _ = export(build, result["top"], wrap, "verilog")
        result["language"] = "verilog"
        synth = synthesize_verilog(text, family=family, top="top", work_dir=work,
                                   timeout=args.synth_timeout, synth_args=args.synth_args,
                                   extra_commands=extra, dsp_limit=dsp_limit,
                                   language="verilog")
    synth.pop("cells", None)
    result["synth"] = synth
    result["fit"] = utilisation(synth, device)
    print(f"  yosys {synth['seconds']:.0f} s", flush=True)
    _write(work, result)

    if family == "ecp5" and not args.skip_pnr:
        result["freq"] = args.freq
        result["tools"]["nextpnr"] = nextpnr_version()
        shutil.copy(LPF, work / LPF.name)
        try:
            pnr = place_and_route_ecp5("top.json", work_dir=work, device=args.nextpnr_device,
                                       package=args.package, freq=args.freq, lpf=LPF.name,
                                       seed=args.seed, timeout=args.pnr_timeout,
                                       extra_args=args.nextpnr_args)
        except SynthError as e:
            result["pnr_error"] = str(e)
            _write(work, result)
            print(_summary(result))
            return 1
        keep = ("TRELLIS_COMB", "TRELLIS_FF", "TRELLIS_RAMW", "DP16KD", "MULT18X18D",
                "ALU54B", "TRELLIS_IO", "DCCA")
        result["pnr"] = {
            "fmax_mhz": pnr["fmax_mhz"], "fmax": pnr["fmax"], "seconds": pnr["seconds"],
            "used": {k: pnr["utilisation"][k] for k in keep if k in pnr["utilisation"]},
            "critical_paths": pnr["critical_paths"],
            "log_fmax_mhz": min((v["fmax"] for v in pnr["log_fmax"].values()), default=None),
            "samples_per_s": (throughput(pnr["fmax_mhz"], args.cycles) if pnr["fmax_mhz"]
                              else None),
            "cycles_per_minibatch": args.cycles,
        }
    _write(work, result)
    print(_summary(result))
    return 0 if result["fit"]["fits"] else 2


def block_designs(build):
    """Constructors of the core's blocks at ``build``'s parameters, as the core makes them."""
    from xnorlearn.hw.axil import AxiLiteRegisters
    from xnorlearn.hw.classifier import LocalClassifier
    from xnorlearn.hw.popcount import XnorPopcount
    from xnorlearn.hw.prng import Mix32, ReinforceDraws
    from xnorlearn.hw.selector import GroupSelector
    from xnorlearn.hw.threshold import ThresholdUnit
    from xnorlearn.hw.update import UpdateEngine

    fan_in = max(build.max_fan_in, build.max_width)
    zw = XnorPopcount(lanes=build.lanes, max_fan_in=fan_in).z_width
    return {
        "popcount": lambda: XnorPopcount(lanes=build.lanes, max_fan_in=fan_in),
        "threshold": lambda: ThresholdUnit(max_neurons=build.max_layers * build.max_width,
                                           z_width=zw, theta_width=16),
        "classifier": lambda: LocalClassifier(classes=build.classes, max_width=build.max_width),
        "selector": lambda: GroupSelector(z_bits=zw, max_width=build.max_width),
        "update": lambda: UpdateEngine(lanes=build.lanes, h_bits=build.h_bits),
        "draws": lambda: ReinforceDraws(lanes=build.draw_lanes),
        "mix32": lambda: Mix32(lanes=1),
        "registers": lambda: AxiLiteRegisters(build=build),
    }


def blocks(args):
    """Place and route each block alone (in a ScanWrapper): which ones limit Fmax."""
    build = _build(args)
    names = args.only or list(block_designs(build))
    rows = []
    for name in names:
        design = block_designs(build)[name]()
        work = Path(args.work_dir) / "blocks" / (name + (f"-{args.tag}" if args.tag else ""))
        work.mkdir(parents=True, exist_ok=True)
        text = rtlil.convert(ScanWrapper(design), name="top")
        synth = synthesize_verilog(text, family="ecp5", work_dir=work, language="rtlil",
                                   synth_args=args.synth_args, timeout=args.synth_timeout,
                                   extra_commands=["write_json top.json"])
        shutil.copy(LPF, work / LPF.name)
        pnr = place_and_route_ecp5("top.json", work_dir=work, freq=args.freq, lpf=LPF.name,
                                   seed=args.seed, timeout=args.pnr_timeout)
        paths = [cp for cp in pnr["critical_paths"] if cp["clocked"]]
        cp = paths[0] if paths else None
        row = {"block": name, "lut_sites": synth["lut_sites"], "ffs": synth["ffs"],
               "fmax_mhz": pnr["fmax_mhz"], "synth_s": synth["seconds"],
               "pnr_s": pnr["seconds"], "critical_path": cp}
        (work / "result.json").write_text(json.dumps(row, indent=1) + "\n")
        rows.append(row)
        print(f"{name}: {synth['lut_sites']} LUT sites, {synth['ffs']} FFs, "
              f"Fmax {pnr['fmax_mhz']:.1f} MHz ({synth['seconds']:.0f} + {pnr['seconds']:.0f} s)"
              + (f"; {cp['delay_ns']:.1f} ns {cp['start_net']} -> {cp['end_net']} "
                 f"[{', '.join(cp['sources'][:4])}]" if cp else ""), flush=True)
    return 0


def _write(work, result):
    (work / "result.json").write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")


def report(args):
    rows = []
    for path in sorted(Path(args.work_dir).glob("*/result.json")):
        r = json.loads(path.read_text())
        b, s, u = r["build"], r["synth"], r["fit"]
        p = r.get("pnr") or {}
        fmax = f"{p['fmax_mhz']:.1f}" if p.get("fmax_mhz") else (
            "failed" if r.get("pnr_error") else "-")
        params = (f"{b['lanes']} / {b['max_layers']} / {b['max_width']} / {b['max_fan_in']} / "
                  f"{b['max_batch']} / {b['max_groups']} / {b['weight_words']}")
        mbit = u["bram_mbit"]
        times = f"{s['seconds']:.0f}" + (f" + {p['seconds']:.0f}" if p else "")
        rows.append(f"| {r['device']} | {r['top']} | {params} | {s['lut_sites']:,} "
                    f"({100 * u['luts']:.0f}%) | {s['ffs']:,} ({100 * u['ffs']:.0f}%) | "
                    f"{s['bram']} ({mbit:.2f} Mbit, {100 * u['bram']:.0f}%) | {s['dsp']} "
                    f"({100 * u['dsp']:.0f}%) | {s.get('soft_multipliers', 0)} | "
                    f"{'yes' if u['fits'] else 'no'} | {fmax} | {times} |")
    print("| Device | Top | Lanes / layers / width / fan-in / batch / groups / words "
          "| LUT sites | FFs | BRAM18 | DSP | Soft mult. | Fits | Fmax (MHz) | Time (s) |")
    print("|---|---|---|--:|--:|--:|--:|--:|---|--:|--:|")
    print("\n".join(rows))
    return 0


def _build_arguments(parser, board):
    """``--preset`` (default ``board``'s) and the build parameters that override it."""
    g = parser.add_argument_group("build parameters (xnorlearn.contract.Build)")
    g.add_argument("--preset", choices=sorted(PRESETS), default=board,
                   help=f"named build the parameters below override (default {board})")
    for name in BUILD_ARGS:
        g.add_argument("--" + name.replace("_", "-"), type=int, default=None,
                       help=f"default the preset's ({getattr(preset(board), name)} in {board})")


def _build(args):
    try:
        return preset(args.preset, **{name: getattr(args, name) for name in BUILD_ARGS
                                      if getattr(args, name) is not None})
    except (TypeError, ValueError) as e:
        raise SystemExit(f"bad build: {e}") from None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    for family, device, board in (("ecp5", "lfe5u-85f", "ulx3s-85f"),
                                  ("xc7", "xc7z020", "pynq-z2")):
        q = sub.add_parser(family, help=f"implement for {device}")
        _build_arguments(q, board)
        q.add_argument("--top", choices=["auto", "accelerator", "core"], default="auto")
        q.add_argument("--device", default=device, choices=sorted(DEVICES))
        q.add_argument("--synth-args", nargs="*", default=[],
                       help="extra options of synth_ecp5 / synth_xilinx "
                            "(e.g. -cmp2softlogic; give them as --synth-args=-cmp2softlogic)")
        q.add_argument("--dsp-limit", default=None,
                       help="DSP blocks to use at most (default: the device's; 'none': no limit)")
        q.add_argument("--wrap", action=argparse.BooleanOptionalAction, default=None,
                       help="scan-chain wrapper (default: on for ecp5, off for xc7)")
        q.add_argument("--language", choices=["rtlil", "verilog"], default="rtlil",
                       help="how the design reaches Yosys (default rtlil: Yosys reads "
                            "Amaranth's Verilog of the core in minutes, its RTLIL in seconds)")
        q.add_argument("--name", help="work directory name (default from the parameters)")
        q.add_argument("--tag", default="", help="suffix of the default name")
        q.add_argument("--work-dir", default=str(ROOT / "build" / "impl"))
        q.add_argument("--synth-timeout", type=float, default=3600)
        if family == "ecp5":
            q.add_argument("--freq", type=float, default=80.0, help="target MHz (default 80)")
            q.add_argument("--seed", type=int, default=1)
            q.add_argument("--nextpnr-device", default="85k")
            q.add_argument("--package", default="CABGA381")
            q.add_argument("--nextpnr-args", type=shlex.split, default=[],
                           help="more nextpnr-ecp5 options, one quoted string "
                                "(e.g. --nextpnr-args='--router router2 --no-route')")
            q.add_argument("--pnr-timeout", type=float, default=5400)
            q.add_argument("--skip-pnr", action="store_true")
            q.add_argument("--cycles", type=int, default=CYCLES_PER_MINIBATCH,
                           help="cycles per training minibatch of 100, for the throughput "
                                f"(default {CYCLES_PER_MINIBATCH:,}: 784-135-135 at 64 lanes)")
        else:
            q.set_defaults(skip_pnr=True)
    q = sub.add_parser("blocks", help="place and route each block alone on the LFE5U-85F")
    _build_arguments(q, "ulx3s-85f")
    q.add_argument("--only", nargs="*", help="blocks to run (default all)")
    q.add_argument("--synth-args", nargs="*", default=[])
    q.add_argument("--tag", default="")
    q.add_argument("--freq", type=float, default=80.0)
    q.add_argument("--seed", type=int, default=1)
    q.add_argument("--work-dir", default=str(ROOT / "build" / "impl"))
    q.add_argument("--synth-timeout", type=float, default=1800)
    q.add_argument("--pnr-timeout", type=float, default=1800)
    q = sub.add_parser("report", help="Markdown table of the results under --work-dir")
    q.add_argument("--work-dir", default=str(ROOT / "build" / "impl"))
    args = p.parse_args(argv)
    if args.command == "report":
        return report(args)
    if args.command == "blocks":
        return blocks(args)
    if DEVICES[args.device]["family"] != args.command:
        p.error(f"--device {args.device} is not a {args.command} device")
    return run(args, args.command)


if __name__ == "__main__":
    sys.exit(main())
