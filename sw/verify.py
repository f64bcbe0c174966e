"""``xnorlearn verify``: train the accelerator's RTL in simulation next to the golden model.

The command sizes a :class:`~xnorlearn.contract.Build` for the network
(:func:`size_build`), generates the Verilog of :class:`~xnorlearn.hw.accelerator.Accelerator`,
and runs it on Verilator or Icarus through :func:`xnorlearn.sim.runner.run_cocotb` with
the cocotb test ``test_verify`` of :mod:`xnorlearn.sim.tb_accel`. That bench drives the
accelerator over its AXI ports as a host would (registers from :mod:`xnorlearn.contract`,
packets from :mod:`xnorlearn.sw.protocol`), trains the same minibatches on the golden
:class:`~xnorlearn.sw.golden.fast.FastBMLP`, and after every minibatch reads back every
hidden weight ``H`` and classifier weight ``P`` of every layer, the predictions of an
``INFER`` of the minibatch and the counters, and compares them all with
:func:`compare` (the same function the regression bench uses).

The bench reports each minibatch as a JSON line in a progress file, which this module
prints as it comes; the result (``PASS`` or the first mismatch as ``layer, index,
expected, got``) and the cycles per minibatch go to ``verify.json`` in ``--out``.
Exit status: 0 PASS, 1 mismatch (or a simulation that failed or timed out), 2 bad
arguments (checked before anything is built).
"""

import dataclasses
import json
import math
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from xnorlearn.sw.cliargs import positive as _positive
from xnorlearn.sw.driver import Mismatch, packet_cycle_limit

__all__ = ["size_build", "BuildError", "add_arguments", "run", "main", "DEFAULT_TIMEOUT"]

#: Default wall-clock limit of the simulation, seconds.
DEFAULT_TIMEOUT = 1800.0
_MASK32 = 0xFFFFFFFF


# -- build sizing ------------------------------------------------------------------------------

class BuildError(ValueError):
    """A network that does not fit the accelerator's architecture; the message names the limit."""


def size_build(sizes, *, classes, gamma, lanes, batch_size, draw_lanes=None, fwd_patterns=1):
    """The smallest :class:`~xnorlearn.contract.Build` that trains network ``sizes``.

    Parameters
    ----------
    sizes : sequence of int
        ``(K_0, K_1, ..., K_L)``.
    classes : int
    gamma : sequence of int
        Group size of each hidden layer.
    lanes : int
    batch_size : int
        Patterns per minibatch (``max_batch``).
    draw_lanes : int, optional
        Reinforcement draws per cycle; default ``min(16, lanes)``.
    fwd_patterns : int, optional
        Patterns the forward pass runs in lockstep (default 1).

    Raises
    ------
    BuildError
        Naming the first architecture limit the network exceeds (the build parameter,
        its allowed range and the value the network needs).
    """
    from xnorlearn.hw.accelerator import core_parameters
    from xnorlearn.contract import LIMITS, Build

    sizes = [int(k) for k in sizes]
    widths = sizes[1:]
    need = {
        "lanes": lanes,
        "max_layers": len(widths),
        "max_width": max(2, max(widths)),
        "max_fan_in": sizes[0],
        "classes": classes,
        "max_batch": batch_size,
        "max_groups": max(-(-k // g) for k, g in zip(widths, gamma)),
        "weight_words": sum(k * -(-kin // lanes) for kin, k in zip(sizes, widths)),
        "draw_lanes": min(16, lanes) if draw_lanes is None else draw_lanes,
        "fwd_patterns": fwd_patterns,
    }
    what = {
        "lanes": "XNOR lanes (--lanes)",
        "max_layers": "hidden layers",
        "max_width": "neurons in a hidden layer",
        "max_fan_in": "inputs of the first layer (K_0, features)",
        "classes": "classes",
        "max_batch": "patterns per minibatch (--batch-size)",
        "max_groups": "groups per layer (K_l / gamma_l)",
        "weight_words": f"weight memory words (sum K_l * ceil(K_(l-1) / {lanes}))",
        "draw_lanes": "reinforcement draws per cycle",
        "fwd_patterns": "patterns per forward step (--fwd-patterns)",
    }
    for name, value in need.items():
        lo, hi = LIMITS[name]
        if not lo <= value <= hi:
            raise BuildError(f"the network does not fit the architecture: {what[name]} "
                             f"= {value}, the limit {name} allows {lo}..{hi}")
    try:
        build = Build(**need, h_bits=8, z_bits=None)
        core_parameters(build)
    except ValueError as e:
        raise BuildError(f"the network does not fit the architecture: {e}") from None
    return build


# -- the command -------------------------------------------------------------------------------

def add_arguments(p):
    """The options of ``xnorlearn verify`` on the (sub)parser ``p``."""
    p.add_argument("--hidden", type=_positive, nargs="+", default=[135, 135], metavar="K",
                   help="hidden layer widths")
    p.add_argument("--classes", type=_positive, default=None,
                   help="classes (None: 10 for the generated dataset, else the dataset's)")
    p.add_argument("--features", type=_positive, default=784,
                   help="inputs K_0 of the generated dataset")
    p.add_argument("--preset", default=None,
                   help="run the named build of a board (pynq-z2, ulx3s-85f) with the "
                        "dataset's classes, instead of the smallest build of the network")
    p.add_argument("--lanes", type=_positive, default=None,
                   help="XNOR lanes of the build (None: 64, or the preset's)")
    p.add_argument("--draw-lanes", type=_positive, default=None,
                   help="reinforcement draws per cycle (None: min(16, lanes))")
    p.add_argument("--fwd-patterns", type=_positive, default=None,
                   help="patterns the forward pass runs in lockstep (None: 1, or the "
                        "preset's)")
    p.add_argument("--seed", type=int, default=0, help="32-bit seed of the golden model")
    p.add_argument("--batches", type=_positive, default=3, help="minibatches to train")
    p.add_argument("--batch-size", type=_positive, default=100)
    p.add_argument("--dataset", default="generated",
                   help="generated (synthetic, default), fashion-mnist, mnist, or a directory "
                        "of IDX files; the first minibatches of the binarised training set")
    p.add_argument("--data-dir", default=None, help="directory holding the dataset's IDX files")
    p.add_argument("--simulator", choices=("verilator", "icarus"), default="verilator")
    p.add_argument("--gamma", type=_positive, nargs="+", default=None, metavar="G",
                   help="group size per layer (None: the divisor of each width closest to 75)")
    p.add_argument("--r", type=float, default=0.25, help="robustness r (R_l = ceil(r K_l))")
    p.add_argument("--p-r", type=float, default=0.5, help="reinforcement probability scale p_r")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                   help="wall-clock limit of the simulation in seconds; every wait on the "
                        "simulator also has a cycle limit derived from the network")
    p.add_argument("--out", default=None,
                   help="directory of the report (verify.json) and the simulator build "
                        "(None: a new temporary directory)")
    return p


class _Usage(Exception):
    """A bad argument: exit status 2."""


def _prepare(args):
    """Check every argument and load the data; returns what the run needs. Raises
    :class:`_Usage` naming the problem."""
    from xnorlearn.sw.datasets import DatasetError, MedianBinarizer, load_dataset, synthetic
    from xnorlearn.sw.golden.config import NetworkConfig

    if not 0 <= args.seed <= _MASK32:
        raise _Usage(f"--seed must be in 0..{_MASK32}, got {args.seed}")
    if not (math.isfinite(args.timeout) and args.timeout > 0):
        raise _Usage(f"--timeout must be a positive number of seconds, got {args.timeout}")
    count = args.batches * args.batch_size
    if args.dataset == "generated":
        classes = 10 if args.classes is None else args.classes
        if not 2 <= classes <= 16:
            raise _Usage(f"--classes must be in 2..16 (the architecture's classes limit), "
                         f"got {classes}")
        data = synthetic(n_train=count, n_test=1, features=args.features, classes=classes,
                         seed=args.seed)
        name = f"generated ({args.features} features, {classes} classes, seed {args.seed})"
    else:
        try:
            data = load_dataset(args.dataset, args.data_dir, seed=args.seed)
        except DatasetError as e:
            raise _Usage(str(e)) from None
        if args.classes is not None and args.classes != data.classes:
            raise _Usage(f"--classes {args.classes} does not match the dataset's "
                         f"{data.classes} classes")
        if len(data.y_train) < count:
            raise _Usage(f"--batches x --batch-size = {count} patterns, the training set of "
                         f"{data.name} has {len(data.y_train)}")
        name = f"{data.name} (first {count} training patterns)"
    x_train = data.x_train.reshape(len(data.x_train), -1)
    a0 = MedianBinarizer().fit(x_train).transform(x_train[:count])
    y = np.asarray(data.y_train[:count], dtype=np.int64)
    try:
        config = NetworkConfig(sizes=(a0.shape[1], *args.hidden), classes=data.classes,
                               gamma=tuple(args.gamma) if args.gamma else None, r=args.r,
                               p_r=args.p_r, seed=args.seed)
    except (TypeError, ValueError) as e:
        raise _Usage(f"bad network configuration: {e}") from None
    if args.preset is not None:
        build = _preset_build(args, config)
    else:
        try:
            build = size_build(config.sizes, classes=config.classes, gamma=config.gamma,
                               lanes=args.lanes or 64, batch_size=args.batch_size,
                               draw_lanes=args.draw_lanes,
                               fwd_patterns=args.fwd_patterns or 1)
        except BuildError as e:
            raise _Usage(str(e)) from None
    return config, build, a0, y, name


def _preset_build(args, config):
    """The build of ``--preset`` with the dataset's classes (and ``--lanes``,
    ``--draw-lanes``, ``--fwd-patterns`` if given); :class:`_Usage` if the network does not fit it."""
    from xnorlearn.contract import PRESETS, preset
    from xnorlearn.hw.accelerator import core_parameters
    from xnorlearn.sw.driver import check_fits
    if args.preset not in PRESETS:
        raise _Usage(f"--preset must be one of {', '.join(sorted(PRESETS))}, "
                     f"got {args.preset!r}")
    given = {name: getattr(args, name) for name in ("lanes", "draw_lanes", "fwd_patterns")
             if getattr(args, name) is not None}
    try:
        build = preset(args.preset, classes=config.classes, **given)
        core_parameters(build)
    except (TypeError, ValueError) as e:
        raise _Usage(f"bad build ({args.preset} preset): {e}") from None
    try:
        check_fits(build, config, args.batch_size)
    except ValueError as e:
        raise _Usage(f"{e} (the {args.preset} preset)") from None
    return build


def run(args, *, corrupt=None, log=print):
    """Run ``xnorlearn verify`` with parsed ``args``; returns the exit status.

    Parameters
    ----------
    corrupt : dict, optional
        Test hook: ``{"batch": b, "what": ..., "layer": ..., "index": ...}`` changes one
        expected value after minibatch ``b`` (:meth:`Observation.corrupted`), so that
        the run must report that mismatch and fail.
    log : callable
        Receives each line of output (argument errors go to ``stderr``).
    """
    try:
        config, build, a0, y, data_name = _prepare(args)
    except _Usage as e:
        print(f"xnorlearn verify: error: {e}", file=sys.stderr)
        return 2
    from xnorlearn.hw.accelerator import Accelerator
    from xnorlearn.sim.runner import CocotbFailure, run_cocotb

    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="xnorlearn-verify-"))
    out.mkdir(parents=True, exist_ok=True)
    out = out.resolve()
    tag = "-".join(map(str, config.sizes)) + f"_c{config.classes}_p{build.lanes}" \
                                             f"_bs{build.max_batch}"
    build_dir = out / f"sim_{args.simulator}_{tag}"
    build_dir.mkdir(parents=True, exist_ok=True)
    progress_path = build_dir / "progress.jsonl"
    result_path = build_dir / "result.json"
    data_path = build_dir / "batches.npz"
    for p in (progress_path, result_path):
        p.unlink(missing_ok=True)
    np.savez(data_path, a0=a0, y=y)
    cycle_limit = packet_cycle_limit(build, config.sizes, args.batch_size)
    t_start = time.perf_counter()
    t_wall = time.time()
    params = {
        "build": dataclasses.asdict(build),
        "verify": {
            "config": config.to_dict(), "data": str(data_path), "batches": args.batches,
            "batch_size": args.batch_size, "progress": str(progress_path),
            "result": str(result_path), "cycle_limit": cycle_limit,
            "deadline_wall": t_wall + args.timeout, "corrupt": corrupt,
        },
    }
    arch = "-".join(map(str, config.sizes))
    log(f"xnorlearn verify: network {arch}, {config.classes} classes, gamma "
        f"{list(config.gamma)}, R {list(config.robustness)}, r {config.r}, p_r {config.p_r}, "
        f"seed {config.seed}; {args.batches} minibatches of {args.batch_size} from {data_name}")
    log("build: " + ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(build).items()))
    log(f"step 1: Verilog of the Accelerator and the {args.simulator} build in {build_dir}")

    from xnorlearn.sim.runner import FAST_VERILATOR_ARGS, VERILATOR_ARGS
    # Optimised C++ pays for its longer build only on long runs.
    work = args.batches * cycle_limit
    extra_args = (() if args.simulator != "verilator" else
                  FAST_VERILATOR_ARGS if work > 2_000_000 else VERILATOR_ARGS)
    failure = []

    def target():
        try:
            run_cocotb(Accelerator(build=build), name="xnorlearn_accelerator",
                       test_module="xnorlearn.sim.tb_accel", simulator=args.simulator,
                       build_dir=build_dir, params=params, testcase="test_verify",
                       extra_build_args=extra_args)
        except CocotbFailure as e:
            failure.append(str(e))
        except Exception as e:      # a build error: reported, not raised from the thread
            failure.append(f"{type(e).__name__}: {e}")

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    seen = 0
    events = []
    t_build = None
    while True:
        alive = thread.is_alive()
        if progress_path.exists():
            lines = progress_path.read_text().splitlines()
            for line in lines[seen:]:
                if not line.endswith("}"):
                    break
                event = json.loads(line)
                seen += 1
                events.append(event)
                if event["event"] == "start":
                    t_build = event["wall"] - t_wall
                    log(f"step 2: built and started in {t_build:.1f} s; training")
                elif event["event"] == "loaded":
                    log(f"loaded: weights of {len(config.sizes) - 1} layers written and read "
                        f"back ({event['sim_s']:.1f} s)")
                elif event["event"] == "batch":
                    c = event["cycles"]
                    log(f"minibatch {event['batch']}/{args.batches}: {event['patterns']} "
                        f"patterns, {event['errors']} errors, {c['CYCLES']} cycles (forward "
                        f"{c['CYCLES_FORWARD']}, update {c['CYCLES_UPDATE']}, reinforce "
                        f"{c['CYCLES_REINFORCE']}, io {c['CYCLES_IO']}), simulated in "
                        f"{event['sim_s']:.1f} s: "
                        + ("match" if event["mismatch"] is None else "MISMATCH"))
                elif event["event"] == "back_to_back":
                    c = event["cycles"]
                    n = event["batches"]
                    log(f"back to back: the weights loaded again, {n} minibatches queued, "
                        f"{c['CYCLES']} cycles, {c['CYCLES'] / n:.0f} per minibatch (forward "
                        f"{c['CYCLES_FORWARD']}, update {c['CYCLES_UPDATE']}, reinforce "
                        f"{c['CYCLES_REINFORCE']}, io {c['CYCLES_IO']}), simulated in "
                        f"{event['sim_s']:.1f} s: "
                        + ("match" if event["mismatch"] is None else "MISMATCH"))
        if not alive:
            break
        thread.join(0.25)
    wall = time.perf_counter() - t_start
    result = json.loads(result_path.read_text()) if result_path.exists() else None
    batches = [e for e in events if e["event"] == "batch"]
    cycles = [e["cycles"]["CYCLES"] for e in batches]
    queued = next((e for e in events if e["event"] == "back_to_back"), None)
    report = {
        "network": list(config.sizes), "classes": config.classes, "config": config.to_dict(),
        "build": dataclasses.asdict(build), "dataset": data_name, "simulator": args.simulator,
        "batches": args.batches, "batch_size": args.batch_size,
        "build_s": t_build, "wall_s": wall,
        "sim_s": sum(e["sim_s"] for e in events if "sim_s" in e),
        "minibatches": batches, "cycles_per_minibatch": cycles,
        "back_to_back": queued,
        "cycles_per_minibatch_back_to_back": (queued["cycles"]["CYCLES"] / queued["batches"]
                                              if queued else None),
        "cycles_per_minibatch_steady": ((queued["cycles"]["CYCLES"] - queued["tail"])
                                        / queued["batches"] if queued else None),
        "build_dir": str(build_dir),
    }
    mismatch = result.get("mismatch") if result else None
    if mismatch is not None:
        status = 1
        m = Mismatch(**{k: tuple(v) if isinstance(v, list) else v for k, v in mismatch.items()})
        log(f"FAIL: first mismatch {m}")
        if cycles:
            log(f"cycles per minibatch: {cycles}")
        report["result"] = "mismatch"
        report["mismatch"] = mismatch
    elif failure or not result or not result.get("passed"):
        status = 1
        reason = failure[0] if failure else (result or {}).get("error", "no result")
        log(f"FAIL: the simulation did not complete: {reason}")
        report["result"] = "error"
        report["error"] = reason
    else:
        status = 0
        mean = sum(cycles) / len(cycles)
        log(f"PASS: {len(batches)} minibatches; every weight (H and P of "
            f"{len(config.sizes) - 1} layers), every prediction and the counters PATTERNS, "
            f"ERRORS, STEP match the golden model"
            + (", after each minibatch and after the back-to-back run" if queued else ""))
        log(f"cycles per minibatch, one at a time with its reinforcement sweeps: {cycles} "
            f"(mean {mean:.0f})")
        if queued is not None:
            log(f"cycles per minibatch, back to back: "
                f"{report['cycles_per_minibatch_back_to_back']:.0f} (each TRAIN's sweeps "
                f"beside the next one's forward pass); "
                f"{report['cycles_per_minibatch_steady']:.0f} without the "
                f"{queued['tail']} cycles of sweeps after the last response, which the next "
                f"minibatch of a longer run would hide")
        log(f"simulation {report['sim_s']:.1f} s, total {wall:.1f} s")
        report["result"] = "pass"
    (out / "verify.json").write_text(json.dumps(report, indent=1))
    log(f"report: {out / 'verify.json'}")
    return status


def main(argv=None, *, corrupt=None):
    """Entry point of ``python -m xnorlearn.sw.verify`` (the CLI's ``verify`` subcommand)."""
    import argparse
    parser = add_arguments(argparse.ArgumentParser(prog="xnorlearn verify"))
    return run(parser.parse_args(argv), corrupt=corrupt)


if __name__ == "__main__":
    sys.exit(main())
