"""cocotb bench of :class:`xnorlearn.hw.prng.ReinforceDraws` (and the Mix32 inside it).

Parameters (``tb_params()``): ``tag_bits`` (width of the DUT's tag, 0 for
none) and ``cases`` (random requests per test). Everything else (lane count)
is read from the DUT's port widths. Random requests come from
``XNORLEARN_SEED`` and the parameter set; each is checked lane by lane
against :func:`xnorlearn.sw.golden.prng.reinforce_draw`.

The module also holds the small stream helpers that the other benches reuse:
:class:`StreamSource`, :class:`StreamSink`, :class:`StreamMonitor`,
:class:`Scoreboard`, :func:`pack` and :func:`unpack`.
"""

import json
import zlib
from collections import deque
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from xnorlearn.sim.runner import default_seed, tb_params
from xnorlearn.sw.golden.prng import MASK32, reinforce_draw, reinforce_key

__all__ = ["StreamSource", "StreamSink", "StreamMonitor", "Scoreboard", "pack", "unpack",
           "case_rng", "record_cases", "TB"]

CLOCK_NS = 10


# -- stream helpers shared by the benches ----------------------------------------------------

def pack(fields):
    """Pack ``[(value, offset, width), ...]`` into one integer (values are masked to width)."""
    word = 0
    for value, offset, width in fields:
        word |= (int(value) & ((1 << width) - 1)) << offset
    return word


def unpack(word, offset, width, *, signed=False):
    """Field ``[offset, offset + width)`` of ``word``, optionally two's complement."""
    value = (word >> offset) & ((1 << width) - 1)
    if signed and value >> (width - 1):
        value -= 1 << width
    return value


def case_rng(test_name):
    """NumPy generator from ``XNORLEARN_SEED``, the parameter set and the test's name."""
    params = json.dumps(tb_params(), sort_keys=True)
    return np.random.default_rng([default_seed(), zlib.crc32(params.encode()),
                                  zlib.crc32(test_name.encode())])


_cases = {}


def record_cases(dut, test_name, count):
    """Log how many random cases a test checked and rewrite ``cases.json`` in the cwd."""
    _cases[test_name] = count
    dut._log.info("%s: checked %d cases", test_name, count)
    Path("cases.json").write_text(json.dumps({"cases": sum(_cases.values()), "tests": _cases},
                                             indent=1, sort_keys=True))


class StreamSource:
    """Drives ``valid``/``payload`` of a stream from a queue, with random idle cycles.

    A new item is presented only once the previous one was accepted; the
    payload is never changed while valid is high and ready low.
    """

    def __init__(self, clk, valid, ready, payload, *, rng, idle=0.0):
        self._clk, self._valid, self._ready, self._payload = clk, valid, ready, payload
        self._rng, self.idle = rng, idle
        self._queue = deque()
        self._valid.value = 0
        self._task = cocotb.start_soon(self._run())

    def send(self, word):
        self._queue.append(int(word))

    @property
    def empty(self):
        return not self._queue

    async def _run(self):
        busy = False
        while True:
            await RisingEdge(self._clk)
            if busy and self._ready.value:
                busy = False
            if not busy:
                if self._queue and (self.idle == 0 or self._rng.random() >= self.idle):
                    self._payload.value = self._queue.popleft()
                    self._valid.value = 1
                    busy = True
                else:
                    self._valid.value = 0


class StreamSink:
    """Drives ``ready`` of a stream, low with probability ``stall`` each cycle."""

    def __init__(self, clk, ready, *, rng, stall=0.0):
        self._clk, self._ready, self._rng, self.stall = clk, ready, rng, stall
        self._ready.value = 1
        self._task = cocotb.start_soon(self._run())

    async def _run(self):
        while True:
            await RisingEdge(self._clk)
            if self.stall:
                self._ready.value = int(self._rng.random() >= self.stall)


class StreamMonitor:
    """Calls ``callback(word)`` for each transfer (valid and ready at a rising edge).

    Also checks the stream rule that a payload offered and not taken stays
    offered, unchanged, on the next cycle.
    """

    def __init__(self, clk, valid, ready, payload, callback):
        self._clk, self._valid, self._ready, self._payload = clk, valid, ready, payload
        self._callback = callback
        self.count = 0
        self._task = cocotb.start_soon(self._run())

    async def _run(self):
        held = None
        while True:
            await RisingEdge(self._clk)
            valid = bool(self._valid.value)
            if held is not None:
                assert valid, "stream dropped valid before the payload was taken"
                word = int(self._payload.value)
                assert word == held, f"payload changed while stalled: {held:#x} -> {word:#x}"
            if not valid:
                held = None
                continue
            word = int(self._payload.value)
            if self._ready.value:
                held = None
                self.count += 1
                self._callback(word)
            else:
                held = word


class Scoreboard:
    """In-order checker: expected items in, observed items compared as they come out."""

    def __init__(self, dut, describe=repr):
        self._dut, self._describe = dut, describe
        self.expected = deque()
        self.checked = 0

    def expect(self, item):
        self.expected.append(item)

    def observe(self, item):
        assert self.expected, f"unexpected output {self._describe(item)}"
        want = self.expected.popleft()
        assert item == want, (f"output {self.checked}: got {self._describe(item)}, "
                              f"expected {self._describe(want)}")
        self.checked += 1


# -- ReinforceDraws bench ----------------------------------------------------------------------

class TB:
    """Clock, reset, request source, draws sink and scoreboard of a ReinforceDraws DUT."""

    def __init__(self, dut, rng, *, idle=0.0, stall=0.0):
        self.dut = dut
        params = tb_params()
        self.tag_bits = int(params.get("tag_bits", 0))
        self.lanes = (len(dut.o__payload) - self.tag_bits) // 16
        assert len(dut.i__payload) == 64 + self.tag_bits, "request width is not key + start + tag"
        assert self.lanes * 16 + self.tag_bits == len(dut.o__payload)
        self.rng = rng
        # request -> golden draws, keyed by the requests seen entering the DUT
        self._golden = {}
        self.scoreboard = Scoreboard(dut, describe=self._describe)
        Clock(dut.clk, CLOCK_NS, unit="ns").start()
        self.source = StreamSource(dut.clk, dut.i__valid, dut.i__ready, dut.i__payload,
                                   rng=np.random.default_rng(rng.integers(1 << 32)), idle=idle)
        self.sink = StreamSink(dut.clk, dut.o__ready,
                               rng=np.random.default_rng(rng.integers(1 << 32)), stall=stall)
        StreamMonitor(dut.clk, dut.i__valid, dut.i__ready, dut.i__payload, self._on_request)
        StreamMonitor(dut.clk, dut.o__valid, dut.o__ready, dut.o__payload,
                      lambda word: self.scoreboard.observe(word))

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 3)
        self.dut.rst.value = 0

    def request(self, seed, layer, t, start, tag=0):
        key = reinforce_key(seed, layer, t)
        self._golden[(key, start & MASK32)] = (seed, layer, t)
        fields = [(key, 0, 32), (start, 32, 32)]
        if self.tag_bits:
            fields.append((tag, 64, self.tag_bits))
        self.source.send(pack(fields))

    def _on_request(self, word):
        # monitor -> golden model: the draws this accepted request must produce
        key, start = unpack(word, 0, 32), unpack(word, 32, 32)
        seed, layer, t = self._golden[(key, start)]
        fields = [(reinforce_draw(seed, layer, t, start + n), 16 * n, 16) for n in range(self.lanes)]
        if self.tag_bits:
            fields.append((unpack(word, 64, self.tag_bits), 16 * self.lanes, self.tag_bits))
        self.scoreboard.expect(pack(fields))

    def _describe(self, word):
        draws = [unpack(word, 16 * n, 16) for n in range(self.lanes)]
        tag = unpack(word, 16 * self.lanes, self.tag_bits) if self.tag_bits else None
        return f"draws={draws} tag={tag}"

    async def drain(self, count):
        while self.scoreboard.checked < count:
            await RisingEdge(self.dut.clk)
        await ClockCycles(self.dut.clk, 5)
        assert not self.scoreboard.expected, "outputs missing"


def _starts(rng, lanes, count):
    """Random start indices: anywhere in 32 bits, small ones, odd/even, near the top."""
    top = (1 << 32) - 1
    corners = [0, 1, 2, lanes - 1, lanes, lanes + 1, top, top - 1, top - lanes, 1 << 31, (1 << 31) - 1]
    starts = list(rng.integers(0, 1 << 32, size=count, dtype=np.uint64))
    starts[: len(corners)] = corners
    return [int(s) for s in starts]


async def _random_requests(dut, name, idle, stall):
    rng = case_rng(name)
    tb = TB(dut, rng, idle=idle, stall=stall)
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
    await _random_requests(dut, "test_random", idle=0.0, stall=0.0)


@cocotb.test(timeout_time=40, timeout_unit="ms")
async def test_stalls(dut):
    """Random requests with idle cycles on the input and backpressure on the output."""
    await _random_requests(dut, "test_stalls", idle=0.3, stall=0.4)


@cocotb.test(timeout_time=20, timeout_unit="ms")
async def test_sweep(dut):
    """A sequential sweep from an odd start equals the golden sweep, weight by weight."""
    rng = case_rng("test_sweep")
    tb = TB(dut, rng, stall=0.2)
    await tb.reset()
    seed, layer, t = int(rng.integers(0, 1 << 32)), 1, int(rng.integers(0, 1000))
    j0, words = 2 * int(rng.integers(0, 1000)) + 1, 32
    for w in range(words):
        tb.request(seed, layer, t, j0 + w * tb.lanes)
    await tb.drain(words)
    record_cases(dut, "test_sweep", words)
