# amaranth: UnusedElaboratable=no
"""cocotb bench of :class:`xnorlearn.hw.prng.ReinforceDraws` (and the Mix32 inside it).

Parameters (``tb_params()``): ``tag_bits`` (width of the DUT's tag, 0 for
none) and ``cases`` (random requests per test). Everything else (lane count)
is read from the DUT's port widths. Random requests come from
``XNORLEARN_SEED`` and the parameter set; each is checked lane by lane
against :func:`xnorlearn.sw.golden.prng.reinforce_draw`.
"""

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles

from xnorlearn.hw.prng import ReinforceDraws
from xnorlearn.sim.runner import tb_params
from xnorlearn.sim.streams import (Scoreboard, StreamMonitor, StreamSink, StreamSource, case_rng,
                                   record_cases, wait_until)
from xnorlearn.sw.golden.prng import MASK32, reinforce_draw, reinforce_key

__all__ = ["TB"]


class TB:
    """Clock, reset, request source, draws sink and scoreboard of a ReinforceDraws DUT.

    The input monitor looks up each accepted request and queues its golden draws
    (and tag) in the scoreboard; the output sink checks every output against them.
    """

    def __init__(self, dut, *, test_name, idle=0.0, backpressure=0.0):
        self.dut = dut
        self.tag_bits = int(tb_params().get("tag_bits", 0))
        self.lanes = (len(dut.o__payload) - self.tag_bits) // 16
        model = ReinforceDraws(lanes=self.lanes, tag_shape=self.tag_bits or None)
        request_layout, draws_layout = model.i.payload.shape(), model.o.payload.shape()
        self.rng = case_rng(test_name)
        source_rng, sink_rng = self.rng.spawn(2)
        # (key, start) -> (seed, layer, t): the golden model needs what the key hashes
        self._golden = {}
        self.scoreboard = Scoreboard()
        Clock(dut.clk, 10, unit="ns").start()
        self.source = StreamSource(dut, "i", dut.clk, request_layout, rng=source_rng, idle=idle)
        self.sink = StreamSink(dut, "o", dut.clk, draws_layout, self.scoreboard.observe,
                               rng=sink_rng, backpressure=backpressure)
        StreamMonitor(dut, "i", dut.clk, request_layout, self._on_request)

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 3)
        self.dut.rst.value = 0

    def request(self, seed, layer, t, start, tag=0):
        key = reinforce_key(seed, layer, t)
        self._golden[(key, start & MASK32)] = (seed, layer, t)
        self.source.send({"key": key, "start": start, **({"tag": tag} if self.tag_bits else {})})

    def _on_request(self, request):
        # monitor -> golden model: the draws this accepted request must produce
        seed, layer, t = self._golden[(request["key"], request["start"])]
        draws = [reinforce_draw(seed, layer, t, request["start"] + n) for n in range(self.lanes)]
        self.scoreboard.expect({"draw": draws, **({"tag": request["tag"]} if self.tag_bits else {})})

    async def drain(self, count):
        await wait_until(self.dut.clk, lambda: self.scoreboard.checked >= count)
        await ClockCycles(self.dut.clk, 5)
        self.scoreboard.check_done()


def _starts(rng, lanes, count):
    """Random start indices: anywhere in 32 bits, small ones, odd/even, near the top."""
    top = (1 << 32) - 1
    corners = [0, 1, 2, lanes - 1, lanes, lanes + 1, top, top - 1, top - lanes, 1 << 31, (1 << 31) - 1]
    starts = list(rng.integers(0, 1 << 32, size=count, dtype=np.uint64))
    starts[: len(corners)] = corners
    return [int(s) for s in starts]


async def _random_requests(dut, name, *, idle, backpressure):
    tb = TB(dut, test_name=name, idle=idle, backpressure=backpressure)
    rng = tb.rng
    await tb.reset()
    count = int(tb_params().get("cases", 200))
    for start in _starts(rng, tb.lanes, count):
        seed = int(rng.integers(0, 1 << 32))
        tb.request(seed, int(rng.integers(0, 8)), int(rng.integers(0, 1 << 20)), start,
                   tag=int(rng.integers(0, 1 << max(tb.tag_bits, 1))))
    await tb.drain(count)
    record_cases(dut, name, tb.scoreboard.checked)


@cocotb.test(timeout_time=20, timeout_unit="ms")
async def test_random(dut):
    """Random requests back to back, output always ready."""
    await _random_requests(dut, "test_random", idle=0.0, backpressure=0.0)


@cocotb.test(timeout_time=40, timeout_unit="ms")
async def test_stalls(dut):
    """Random requests with idle cycles on the input and backpressure on the output."""
    await _random_requests(dut, "test_stalls", idle=0.3, backpressure=0.4)


@cocotb.test(timeout_time=20, timeout_unit="ms")
async def test_sweep(dut):
    """A sequential sweep from an odd start equals the golden sweep, weight by weight."""
    tb = TB(dut, test_name="test_sweep", backpressure=0.2)
    rng = tb.rng
    await tb.reset()
    seed, layer, t = int(rng.integers(0, 1 << 32)), 1, int(rng.integers(0, 1000))
    j0, words = 2 * int(rng.integers(0, 1000)) + 1, 32
    for w in range(words):
        tb.request(seed, layer, t, j0 + w * tb.lanes)
    await tb.drain(words)
    record_cases(dut, "test_sweep", words)
