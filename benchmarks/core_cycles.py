"""Cycles per training minibatch of the TrainerCore, measured in cocotb + Verilator.

    python benchmarks/core_cycles.py [--hidden 135 135] [--lanes 64] [--draw-lanes 16]
                                     [--fwd-patterns 1] [--batch-size 100] [--batches 3]
                                     [--dataset fashion-mnist]

Builds a :class:`~xnorlearn.hw.core.TrainerCore` sized for the network (784 inputs,
10 classes, golden defaults of :class:`~xnorlearn.sw.golden.config.NetworkConfig`:
gamma the divisor of each width nearest 75, r 0.25, p_r 0.5, 8-bit H, PRNG-initialised
weights), loads the golden model's initial weights into it and trains real minibatches
(median-binarised Fashion-MNIST; the synthetic dataset, with a note, if it is absent) on
the core and on the golden model, one at a time: each minibatch's cycles run from its
header to the end of its reinforcement sweeps, which on a stream of minibatches run
beside the next one's forward pass (``xnorlearn verify`` also measures that, back to
back). After every minibatch the whole of ``H`` and ``P`` is read back and compared, so
the figures are those of a correct run. The cocotb test is
``test_benchmark`` of :mod:`xnorlearn.sim.tb_core`; it writes the core's cycle counters
to ``bench.json`` in the build directory.

Printed per minibatch: busy cycles and their breakdown from the core's counters
(``forward``: the forward pass of all layers, the group selection included, since it
runs inside the forward stream; ``update``: CP updates; ``reinforce``: the reinforcement
sweeps; ``io``: loading the TRAIN packet and the status word), and
``eta = (bs * sum_l K_{l-1} K_l / F) / cycles`` with ``F = lanes * fwd_patterns`` the
XNORs per cycle of the forward pass. Also printed: the padding bound
``ceil(bs / fwd_patterns) * sum_l K_l * ceil(K_{l-1} / lanes)`` that no forward pass of
one word per pattern lane and cycle can beat, and Verilator's simulation speed during the
training packets.
"""

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from xnorlearn.hw.core import TrainerCore
from xnorlearn.sim.runner import run_cocotb
from xnorlearn.sw.golden.config import NetworkConfig
from xnorlearn.sw.golden.model import BMLP

FAST_VERILATOR_ARGS = ["--no-public-flat-rw", "--public-depth", "1", "-CFLAGS", "-O2"]


def load_patterns(name, count, seed):
    """``count`` binarised training patterns (±1 ``int8``) and labels, shuffled."""
    from xnorlearn.sw.datasets import DatasetError, MedianBinarizer, load_dataset
    try:
        ds = load_dataset(name, seed=seed)
    except DatasetError as e:
        print(f"note: {e}; using the synthetic dataset instead (784 features, 10 classes)")
        from xnorlearn.sw.datasets import synthetic
        ds = synthetic(n_train=max(count, 2000), features=784, classes=10, seed=seed)
    x = ds.x_train.reshape(len(ds.x_train), -1)
    binar = MedianBinarizer().fit(x)
    order = np.random.default_rng(seed).permutation(len(x))[:count]
    return binar.transform(x[order]), np.asarray(ds.y_train)[order], ds.name


def build_params(sizes, lanes, batch_size, gamma, draw_lanes, classes, fwd_patterns=1):
    words = sum(k * -(-kin // lanes) for kin, k in zip(sizes, sizes[1:]))
    return dict(lanes=lanes, max_layers=len(sizes) - 1, max_width=max(sizes[1:]),
                max_fan_in=sizes[0], classes=classes, max_batch=batch_size,
                max_groups=max(k // g for k, g in zip(sizes[1:], gamma)),
                weight_words=words, draw_lanes=draw_lanes, fwd_patterns=fwd_patterns)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hidden", type=int, nargs="+", default=[135, 135])
    ap.add_argument("--lanes", type=int, default=64)
    ap.add_argument("--draw-lanes", type=int, default=None,
                    help="reinforcement draws per cycle (default: the core's default)")
    ap.add_argument("--fwd-patterns", type=int, default=1,
                    help="patterns the forward pass runs in lockstep")
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--batches", type=int, default=3)
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--build-dir", default="build/core_cycles")
    args = ap.parse_args(argv)

    a0, y, ds_name = load_patterns(args.dataset, args.batch_size * args.batches, args.seed)
    sizes = (a0.shape[1], *args.hidden)
    cfg = NetworkConfig(sizes=sizes, classes=10, seed=args.seed)
    draw_lanes = args.draw_lanes or min(16, args.lanes)
    build = build_params(sizes, args.lanes, args.batch_size, cfg.gamma, draw_lanes, cfg.classes,
                         args.fwd_patterns)
    tag = "-".join(map(str, sizes)) + (f"_p{args.lanes}_d{draw_lanes}_g{args.fwd_patterns}"
                                       f"_bs{args.batch_size}")
    build_dir = Path(args.build_dir).resolve() / tag
    build_dir.mkdir(parents=True, exist_ok=True)
    data_path = build_dir / "batches.npz"
    np.savez(data_path, a0=a0, y=y)
    bench = {"sizes": list(sizes), "gamma": list(cfg.gamma), "r": cfg.r, "p_r": cfg.p_r,
             "seed": cfg.seed, "batch_size": args.batch_size, "batches": args.batches,
             "data": str(data_path)}
    print(f"network {sizes}, {cfg.classes} classes, gamma {cfg.gamma}, R {cfg.robustness}, "
          f"thresholds {BMLP(cfg).thresholds}, {ds_name}, bs {args.batch_size}")
    print(f"build {build}")
    (build_dir / "bench.json").unlink(missing_ok=True)
    t0 = time.perf_counter()
    run_cocotb(TrainerCore(**build), name="trainer_core", test_module="xnorlearn.sim.tb_core",
               simulator="verilator", build_dir=build_dir, testcase="test_benchmark",
               params={"build": build, "benchmark": bench}, extra_build_args=FAST_VERILATOR_ARGS)
    print(f"build + run: {time.perf_counter() - t0:.0f} s (log: {build_dir / 'test.log'})")
    results = json.loads((build_dir / "bench.json").read_text())["results"]

    L, G = args.lanes, args.fwd_patterns
    bs = args.batch_size
    ideal = bs * sum(kin * k for kin, k in zip(sizes, sizes[1:])) / (L * G)
    padding = -(-bs // G) * sum(k * math.ceil(kin / L) for kin, k in zip(sizes, sizes[1:]))
    print(f"\nideal bs*sum K_(l-1)K_l/F = {ideal:.0f} cycles (F = {L * G} XNORs per cycle); "
          f"padding bound of the forward pass ceil(bs/G)*sum K_l*ceil(K_(l-1)/lanes) = "
          f"{padding} cycles (eta <= {ideal / padding:.3f})")
    print(f"{'batch':>5} {'errors':>6} {'cycles':>8} {'forward':>8} {'update':>7} "
          f"{'reinf':>6} {'io':>6} {'other':>5} {'eta':>6} {'sim cyc/s':>9}")
    for r in results:
        other = r["cycles"] - r["cycles_forward"] - r["cycles_update"] - r["cycles_reinforce"] \
            - r["cycles_io"]
        print(f"{r['batch']:>5} {r['errors']:>6} {r['cycles']:>8} {r['cycles_forward']:>8} "
              f"{r['cycles_update']:>7} {r['cycles_reinforce']:>6} {r['cycles_io']:>6} "
              f"{other:>5} {ideal / r['cycles']:>6.3f} {r['free_cycles'] / r['wall_s']:>9.0f}")
    mean = sum(r["cycles"] for r in results) / len(results)
    print(f"mean {mean:.0f} cycles per minibatch, eta {ideal / mean:.3f} (forward pass: selection "
          f"runs inside it; weights matched the golden model after every minibatch)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
