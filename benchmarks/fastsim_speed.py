"""Speed of the fast simulated board: simulated clock cycles per second while it trains.

Builds (or takes from the cache) the Verilator program of a build, loads a network with
random weights through the register file and WRITE_H/P/T packets, then sends TRAIN
packets of random minibatches and prints, for each, the cycles it took, the wall-clock
time and the cycles per second; the summary also gives the cycles per CPU second of the
simulator process (from /proc, so a machine shared with other work does not lower it).
With ``--check`` the golden model trains the same minibatches and the error counts are
compared.

    python benchmarks/fastsim_speed.py                       # 64 lanes, 784-135-135, bs 100
    python benchmarks/fastsim_speed.py --lanes 32 --build max_width=64 max_fan_in=128 \\
        max_layers=2 classes=6 max_batch=16 max_groups=8 --inputs 100 --hidden 40 30 \\
        --classes 6 --batch 16
"""

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from xnorlearn.contract import Build, RegisterMap
from xnorlearn.sim.fastsim import FastSimTransport
from xnorlearn.sw.driver import Device
from xnorlearn.sw import protocol
from xnorlearn.sw.golden.config import NetworkConfig
from xnorlearn.sw.golden.fast import FastBMLP

TIMEOUT = 600.0


def cpu_seconds(pid):
    """CPU time (user + system) of process ``pid`` so far, from /proc; None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def parse_build(lanes, pairs):
    """``Build(lanes=lanes, key=value, ...)`` from ``key=value`` strings."""
    kwargs = {"lanes": lanes}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--build takes key=value pairs, got {pair!r}")
        kwargs[key] = None if value == "None" else int(value)
    try:
        return Build(**kwargs)
    except (TypeError, ValueError) as e:
        raise SystemExit(f"bad build: {e}") from None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lanes", type=int, default=64, help="XNOR lanes P (64)")
    ap.add_argument("--build", nargs="*", default=[], metavar="KEY=VALUE",
                    help="other Build parameters (default: the PYNQ-Z2 build)")
    ap.add_argument("--inputs", type=int, default=784, help="K_0 (784)")
    ap.add_argument("--hidden", type=int, nargs="+", default=[135, 135],
                    help="hidden widths (135 135)")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--batch", type=int, default=100, help="patterns per minibatch (100)")
    ap.add_argument("--batches", type=int, default=3, help="minibatches timed (3)")
    ap.add_argument("--idle", type=float, default=0.0, help="stall probability on s_axis")
    ap.add_argument("--backpressure", type=float, default=0.0,
                    help="probability of tready low on m_axis")
    ap.add_argument("--check", action="store_true",
                    help="compare each error count with the golden model's")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache-dir", default=None, help="cache of built programs")
    ap.add_argument("--executable", default=None,
                    help="a simulator program already built for this build")
    args = ap.parse_args(argv)

    build = parse_build(args.lanes, args.build)
    rng = np.random.default_rng(args.seed)
    try:
        cfg = NetworkConfig(sizes=(args.inputs, *args.hidden), classes=args.classes,
                            seed=int(rng.integers(1 << 32)))
    except (TypeError, ValueError) as e:
        raise SystemExit(f"bad network: {e}") from None
    model = FastBMLP(cfg)
    for l in range(cfg.layers):
        model.H[l] = (2 * rng.integers(-8, 8, size=model.H[l].shape) + 1).astype(np.int32)
    model._sync()

    started = time.monotonic()
    with FastSimTransport(build, idle=args.idle, backpressure=args.backpressure,
                          seed=args.seed, cache_dir=args.cache_dir,
                          executable=args.executable) as board:
        print(f"simulator ready in {time.monotonic() - started:.1f} s: {board.executable}")
        regmap = RegisterMap(build)
        regmap.check_build({name: board.read32(regmap.offsets()[name], timeout=TIMEOUT)
                            for name in ("ID", "VERSION", "BUILD0", "BUILD1", "BUILD2",
                                         "BUILD3")})
        t0, c0 = time.perf_counter(), board.cycles
        Device(board, build=build, timeout=TIMEOUT).load(model)
        print(f"loaded {cfg.sizes}: {board.cycles - c0} cycles in "
              f"{time.perf_counter() - t0:.2f} s")
        total_cycles = total_seconds = total_cpu = 0
        for b in range(args.batches):
            a0 = np.where(rng.random((args.batch, cfg.sizes[0])) < 0.5, 1, -1).astype(np.int8)
            y = rng.integers(0, cfg.classes, size=args.batch)
            packet = protocol.train_packet(a0, y, classes=cfg.classes)
            cpu0 = cpu_seconds(board.pid)
            t0, c0 = time.perf_counter(), board.cycles
            board.send(packet, timeout=TIMEOUT)
            errors = protocol.parse_train_response(board.recv(1, timeout=TIMEOUT), args.batch)
            seconds, cycles = time.perf_counter() - t0, board.cycles - c0
            cpu1 = cpu_seconds(board.pid)
            total_cycles += cycles
            total_seconds += seconds
            if cpu0 is not None and cpu1 is not None:
                total_cpu += cpu1 - cpu0
            line = (f"TRAIN {b}: {cycles} cycles in {seconds:.3f} s = "
                    f"{cycles / seconds:,.0f} cycles/s, {errors} errors")
            if args.check:
                want = model.train_batch(a0, y)
                line += " (golden: match)" if want == errors else f" (golden: {want}, MISMATCH)"
            print(line)
        cpu = (f"; {total_cycles / total_cpu:,.0f} cycles per CPU second of the simulator"
               if total_cpu > 0 else "")
        print(f"{build.lanes} lanes, {'-'.join(map(str, cfg.sizes))}, batch {args.batch}: "
              f"{total_cycles / total_seconds:,.0f} cycles/s "
              f"({args.batch * args.batches / total_seconds:,.1f} patterns/s simulated){cpu}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
