"""Simulation speed of the 64-lane update engine under cocotb + Verilator (cycles per second).

    python benchmarks/sim_speed_update.py [--cycles 2000000] [--lanes 64] [--simulator verilator]

The engine runs inside a small harness that makes its own random input words
(a bank of xorshift32 generators, one new word per cycle) and folds every
output word into a checksum, so the test bench only starts the run and waits
for ``done``: Python is not woken once per cycle. Before the timed run a short
stream is checked: the harness's checksum must equal the one computed in
Python from the same generators and the golden ``cp_step`` / ``reinforce_step``
(via :func:`xnorlearn.sim.tb_update.golden_update`), which shows the timed
cycles do real work.

Prints simulated cycles per wall-clock second of the timed run (build time
excluded). With Verilator the model is built with ``--no-public-flat-rw
--public-depth 1 -CFLAGS -O2`` (only the harness's ports are visible to
cocotb, C++ at -O2): cocotb's default ``--public-flat-rw`` and ``-Os`` make
the model about two times slower. ``--plain-build`` measures cocotb's default
build instead.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import cocotb
from amaranth import Cat, Const, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from xnorlearn.hw.update import UpdateEngine, update_input_layout, update_output_layout
from xnorlearn.sim.runner import run_cocotb, tb_params
from xnorlearn.sim.tb_update import golden_update, unpack_input
from xnorlearn.sw.golden.prng import GOLDEN, MASK32, mix32

CHECK_WORDS = 2000
FAST_VERILATOR_ARGS = ["--no-public-flat-rw", "--public-depth", "1", "-CFLAGS", "-O2"]


def _seeds(count, seed):
    return [mix32((seed + g * GOLDEN) & MASK32) | 1 for g in range(count)]  # xorshift needs != 0


def _xorshift32(x):
    x ^= (x << 13) & MASK32
    x ^= x >> 17
    x ^= (x << 5) & MASK32
    return x


def _fold(value, bits):
    acc = 0
    for k in range(0, bits, 32):
        acc ^= (value >> k) & MASK32
    return acc


class SpeedHarness(wiring.Component):
    """UpdateEngine fed by on-chip random words; output folded into a checksum.

    Members
    -------
    words : In(32)
        Number of words to run; sampled when ``start`` is high.
    start : In(1)
    done : Out(1)
        High once all ``words`` outputs were taken.
    checksum : Out(32)
        ``acc = rotl(acc, 1) ^ xor_of_32bit_chunks(output payload)`` per output word.
    """

    def __init__(self, *, lanes, h_bits=8, seed=1):
        self.lanes, self.h_bits, self.seed = lanes, h_bits, seed
        self.in_bits = update_input_layout(lanes=lanes, h_bits=h_bits).size
        self.out_bits = update_output_layout(lanes=lanes, h_bits=h_bits).size
        self.generators = (self.in_bits + 31) // 32
        super().__init__({"words": In(32), "start": In(1), "done": Out(1), "checksum": Out(32)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = engine = UpdateEngine(lanes=self.lanes, h_bits=self.h_bits)
        states = [Signal(32, init=s, name=f"rng{g}")
                  for g, s in enumerate(_seeds(self.generators, self.seed))]
        to_send = Signal(32)
        to_take = Signal(32)
        running = Signal()
        m.d.comb += [engine.i.payload.as_value().eq(Cat(*states)[:self.in_bits]),
                     engine.i.valid.eq(running & (to_send != 0)),
                     engine.o.ready.eq(1)]
        with m.If(self.start):
            m.d.sync += [to_send.eq(self.words), to_take.eq(self.words), running.eq(1),
                         self.checksum.eq(0), self.done.eq(0)]
        with m.Else():
            with m.If(engine.i.valid & engine.i.ready):
                m.d.sync += to_send.eq(to_send - 1)
                for x in states:
                    a = x ^ (x << 13)[:32]
                    b = a ^ (a >> 17)
                    m.d.sync += x.eq(b ^ (b << 5)[:32])
            with m.If(engine.o.valid & engine.o.ready):
                payload = engine.o.payload.as_value()
                fold = Const(0, 32)
                for k in range(0, self.out_bits, 32):
                    fold = fold ^ payload[k:k + 32]
                m.d.sync += [to_take.eq(to_take - 1),
                             self.checksum.eq(self.checksum.rotate_left(1) ^ fold)]
                with m.If(running & (to_take == 1)):
                    m.d.sync += [self.done.eq(1), running.eq(0)]
        return m


def expected_checksum(words, *, lanes, h_bits, seed):
    """The harness's checksum after ``words`` words, from the golden model."""
    in_bits = update_input_layout(lanes=lanes, h_bits=h_bits).size
    out_bits = update_output_layout(lanes=lanes, h_bits=h_bits).size
    w_offset = update_output_layout(lanes=lanes, h_bits=h_bits)["w"].offset
    states = _seeds((in_bits + 31) // 32, seed)
    acc = 0
    for _ in range(words):
        value = sum(s << (32 * g) for g, s in enumerate(states)) & ((1 << in_bits) - 1)
        out = golden_update(unpack_input(value, lanes=lanes, h_bits=h_bits), h_bits=h_bits)
        packed = sum((h & ((1 << h_bits) - 1)) << (n * h_bits) for n, h in enumerate(out["h"]))
        packed |= out["w"] << w_offset
        acc = ((acc << 1) | (acc >> 31)) & MASK32
        acc ^= _fold(packed, out_bits)
        states = [_xorshift32(s) for s in states]
    return acc


async def _reset(dut):
    dut.start.value = 0
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 2)


async def _run(dut, words):
    dut.words.value = words
    dut.start.value = 1
    await RisingEdge(dut.clk)
    dut.start.value = 0
    start = time.perf_counter()
    await RisingEdge(dut.done)
    wall = time.perf_counter() - start
    await ReadOnly()  # Icarus may call back on ``done`` before the checksum register settles
    return wall


@cocotb.test(timeout_time=10, timeout_unit="ms")
async def test_check(dut):
    """The harness's checksum over a short stream equals the golden model's."""
    params = tb_params()
    Clock(dut.clk, 10, unit="ns", impl="gpi").start()  # toggled in C++, not by a coroutine
    await _reset(dut)
    await _run(dut, CHECK_WORDS)
    want = expected_checksum(CHECK_WORDS, lanes=params["lanes"], h_bits=params["h_bits"],
                             seed=params["seed"])
    got = int(dut.checksum.value)
    assert got == want, f"checksum {got:#010x}, golden {want:#010x}"
    dut._log.info("checksum of %d words matches the golden model", CHECK_WORDS)


@cocotb.test(timeout_time=1000, timeout_unit="sec")
async def test_speed(dut):
    """Timed run: ``cycles`` words back to back; the bench only waits for ``done``."""
    cycles = int(tb_params()["cycles"])
    Clock(dut.clk, 10, unit="ns", impl="gpi").start()  # toggled in C++, not by a coroutine
    await _reset(dut)
    wall = await _run(dut, cycles)
    rate = cycles / wall
    dut._log.info("%d cycles in %.2f s: %.0f cycles/s", cycles, wall, rate)
    Path("sim_speed.json").write_text(json.dumps({"cycles": cycles, "wall_s": wall,
                                                  "cycles_per_s": rate}))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lanes", type=int, default=64)
    p.add_argument("--h-bits", type=int, default=8)
    p.add_argument("--cycles", type=int, default=2_000_000)
    p.add_argument("--simulator", default="verilator", choices=["verilator", "icarus"])
    p.add_argument("--build-dir", default="build/sim_speed_update")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--plain-build", action="store_true",
                   help="build with cocotb's default Verilator flags (all signals public, -Os)")
    args = p.parse_args()
    if args.cycles < 1:
        p.error(f"--cycles must be at least 1, got {args.cycles}")
    fast = args.simulator == "verilator" and not args.plain_build
    build_dir = (Path(args.build_dir)
                 / f"{args.simulator}_l{args.lanes}_h{args.h_bits}{'_fast' if fast else ''}")
    harness = SpeedHarness(lanes=args.lanes, h_bits=args.h_bits, seed=args.seed)
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # the cocotb process imports us
    start = time.perf_counter()
    run_cocotb(harness, name="sim_speed_update", test_module="sim_speed_update",
               simulator=args.simulator, build_dir=build_dir,
               params={"lanes": args.lanes, "h_bits": args.h_bits, "seed": args.seed,
                       "cycles": args.cycles},
               extra_build_args=FAST_VERILATOR_ARGS if fast else ())
    total = time.perf_counter() - start
    result = json.loads((build_dir / "sim_speed.json").read_text())
    build = "fast build" if fast else "cocotb's default build"
    print(f"update engine, {args.lanes} lanes, h_bits {args.h_bits}, {args.simulator} ({build}): "
          f"{result['cycles']} cycles in {result['wall_s']:.2f} s wall -> "
          f"{result['cycles_per_s']:,.0f} simulated cycles/s "
          f"(checked {CHECK_WORDS} words against the golden model; build + run {total:.0f} s)")


if __name__ == "__main__":
    main()
