"""cocotb bench of :class:`xnorlearn.hw.update.UpdateEngine`.

Parameters (``tb_params()``): ``tag_bits`` (width of the DUT's tag, 0 for
none) and ``cases`` (random words per test). Lanes and ``h_bits`` are read
from the DUT's port widths (input minus output width is ``3 + 2 * lanes``).
Every accepted input word goes through the golden model
(:func:`golden_update`, built on ``cp_step`` and ``reinforce_step``) into an
in-order scoreboard that checks each output word as a whole.

The word generator, packer and golden function are also used by the
amaranth.sim tests in ``tests/hw/test_update.py``.
"""

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles

from xnorlearn.hw.update import UpdateOp, update_input_layout, update_output_layout
from xnorlearn.sim.runner import tb_params
from xnorlearn.sim.streams import (Scoreboard, StreamMonitor, StreamSink, StreamSource, case_rng,
                                   pack, record_cases, unpack, wait_until)
from xnorlearn.sw.golden.literal import cp_step, reinforce_step

__all__ = ["golden_update", "random_words", "corner_words", "pack_input", "unpack_output",
           "unpack_input", "TB"]


def _input_layout(lanes, h_bits, tag_bits):
    return update_input_layout(lanes=lanes, h_bits=h_bits, tag_shape=tag_bits or None)


def _output_layout(lanes, h_bits, tag_bits):
    return update_output_layout(lanes=lanes, h_bits=h_bits, tag_shape=tag_bits or None)


def pack_input(word, *, lanes, h_bits, tag_bits=0):
    """An input word (dict, see :func:`random_words`) as the integer value of the ``i`` payload."""
    return pack(_input_layout(lanes, h_bits, tag_bits), word)


def unpack_input(value, *, lanes, h_bits, tag_bits=0):
    """Inverse of :func:`pack_input`."""
    return unpack(_input_layout(lanes, h_bits, tag_bits), value)


def unpack_output(value, *, lanes, h_bits, tag_bits=0):
    """The ``o`` payload as ``{"h": [...], "w": int[, "tag": int]}``."""
    return unpack(_output_layout(lanes, h_bits, tag_bits), value)


def golden_update(word, *, h_bits):
    """Expected output of one input word, lane by lane from the golden scalar functions."""
    h_max = (1 << (h_bits - 1)) - 1
    new = []
    for n, h in enumerate(word["h"]):
        if (word["mask"] >> n) & 1:
            if word["op"] == UpdateOp.CP.value:
                a = 1 if (word["a"] >> n) & 1 else -1
                h = cp_step([h], [a], 1 if word["rho"] else -1, h_max)[0]
            elif word["op"] == UpdateOp.REINFORCE.value:
                # A set `hit` bit stands for a draw below the threshold.
                hit = (word["hit"] >> n) & 1
                h = reinforce_step(h, 0 if hit else 1, 1, h_max)
        new.append(h)
    w = sum(1 << n for n, h in enumerate(new) if h > 0)
    out = {"h": new, "w": w}
    if "tag" in word:
        out["tag"] = word["tag"]
    return out


def _random_h(rng, lanes, h_bits):
    h_max = (1 << (h_bits - 1)) - 1
    kind = rng.integers(4)
    if kind == 0:  # anything representable, even values and -2**(h_bits-1) included
        return [int(v) for v in rng.integers(-h_max - 1, h_max + 1, size=lanes)]
    if kind == 1:  # saturation corners and their neighbours
        return [int(v) for v in rng.choice([-h_max, -h_max + 2, h_max - 2, h_max, -1, 1], size=lanes)]
    odd = 2 * rng.integers(-(h_max + 1) // 2, (h_max + 1) // 2, size=lanes) + 1  # stored values
    return [int(v) for v in odd]


def _random_mask(rng, lanes):
    kind = rng.integers(6)
    full = (1 << lanes) - 1
    if kind == 0:  # partial last word: a prefix of valid lanes
        return (1 << int(rng.integers(1, lanes))) - 1
    if kind == 1:
        return int.from_bytes(rng.bytes((lanes + 7) // 8), "little") & full
    if kind == 2 and rng.random() < 0.3:
        return 0
    return full


def _random_hits(rng, lanes):
    kind = rng.integers(6)
    full = (1 << lanes) - 1
    if kind == 0:   # a threshold of 0 or 65536: no weight or every weight
        return full if rng.random() < 0.5 else 0
    return int.from_bytes(rng.bytes((lanes + 7) // 8), "little") & full


def random_words(rng, count, *, lanes, h_bits, tag_bits=0):
    """``count`` random input words covering every op (3 = unused code), saturation, masks,
    and reinforcement of no lane, every lane and random lanes."""
    words = []
    for _ in range(count):
        word = {
            "op": int(rng.choice(4, p=[0.1, 0.4, 0.4, 0.1])),
            "h": _random_h(rng, lanes, h_bits),
            "a": int.from_bytes(rng.bytes((lanes + 7) // 8), "little") & ((1 << lanes) - 1),
            "rho": int(rng.integers(2)),
            "mask": _random_mask(rng, lanes),
            "hit": _random_hits(rng, lanes),
        }
        if tag_bits:
            word["tag"] = int(rng.integers(0, 1 << tag_bits))
        words.append(word)
    return words


def corner_words(*, lanes, h_bits, tag_bits=0):
    """Deterministic corners: every op on H at ±h_max (and one step inside), reinforcement of
    no lane and of alternate lanes, all-positive and all-negative activations, full, partial
    and empty masks."""
    h_max = (1 << (h_bits - 1)) - 1
    full = (1 << lanes) - 1
    h_rows = [[h_max] * lanes, [-h_max] * lanes, [h_max - 2] * lanes, [-h_max + 2] * lanes,
              [(h_max if n % 2 else -h_max) for n in range(lanes)], [(-1) ** n for n in range(lanes)]]
    words = []
    for h in h_rows:
        for op in (0, 1, 2, 3):
            for rho, a in ((1, full), (0, full), (1, 0), (0, 0x5555555555555555 & full)):
                if op != 1 and (rho, a) != (1, full):
                    continue
                alternate = 0x5555555555555555 & full
                for hit in ((0, alternate, full) if op == 2 else (alternate,)):
                    for mask in (full, full >> (lanes // 2 + 1), 0):
                        words.append({"op": op, "h": list(h), "a": a, "rho": rho, "mask": mask,
                                      "hit": hit, **({"tag": len(words) % (1 << tag_bits)}
                                                     if tag_bits else {})})
    return words


class TB:
    """Clock, reset, word source, output sink and scoreboard of an UpdateEngine DUT.

    The input monitor runs each accepted word through :func:`golden_update` into
    the scoreboard; the output sink checks every output word against it, whole.
    """

    def __init__(self, dut, *, test_name, idle=0.0, backpressure=0.0):
        self.dut = dut
        self.tag_bits = int(tb_params().get("tag_bits", 0))
        in_bits, out_bits = len(dut.i__payload), len(dut.o__payload)
        self.lanes, rest = divmod(in_bits - out_bits - 3, 2)
        assert rest == 0 and self.lanes > 0, f"port widths {in_bits}/{out_bits} do not fit"
        self.h_bits = (out_bits - self.tag_bits) // self.lanes - 1
        shape = (self.lanes, self.h_bits, self.tag_bits)
        self.rng = case_rng(test_name)
        source_rng, sink_rng = self.rng.spawn(2)
        self.scoreboard = Scoreboard()
        Clock(dut.clk, 10, unit="ns").start()
        self.source = StreamSource(dut, "i", dut.clk, _input_layout(*shape), rng=source_rng,
                                   idle=idle)
        self.sink = StreamSink(dut, "o", dut.clk, _output_layout(*shape), self.scoreboard.observe,
                               rng=sink_rng, backpressure=backpressure)
        StreamMonitor(dut, "i", dut.clk, _input_layout(*shape),
                      lambda word: self.scoreboard.expect(golden_update(word, h_bits=self.h_bits)))

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 3)
        self.dut.rst.value = 0

    def send(self, word):
        self.source.send(word)

    async def drain(self, count):
        await wait_until(self.dut.clk, lambda: self.scoreboard.checked >= count)
        await ClockCycles(self.dut.clk, 5)
        self.scoreboard.check_done()


async def _run(dut, name, words_fn, *, idle, backpressure):
    tb = TB(dut, test_name=name, idle=idle, backpressure=backpressure)
    await tb.reset()
    words = words_fn(tb.rng, tb)
    for word in words:
        tb.send(word)
    await tb.drain(len(words))
    record_cases(dut, name, tb.scoreboard.checked)


def _random(rng, tb):
    return random_words(rng, int(tb_params().get("cases", 300)), lanes=tb.lanes, h_bits=tb.h_bits,
                        tag_bits=tb.tag_bits)


@cocotb.test(timeout_time=20, timeout_unit="ms")
async def test_random(dut):
    """Random words back to back, output always ready."""
    await _run(dut, "test_random", _random, idle=0.0, backpressure=0.0)


@cocotb.test(timeout_time=40, timeout_unit="ms")
async def test_stalls(dut):
    """Random words with idle input cycles and output backpressure."""
    await _run(dut, "test_stalls", _random, idle=0.3, backpressure=0.4)


@cocotb.test(timeout_time=20, timeout_unit="ms")
async def test_corners(dut):
    """H at ±h_max, reinforcement of no lane and every lane, partial and empty masks,
    every op."""
    await _run(dut, "test_corners",
               lambda rng, tb: corner_words(lanes=tb.lanes, h_bits=tb.h_bits, tag_bits=tb.tag_bits),
               idle=0.1, backpressure=0.2)
