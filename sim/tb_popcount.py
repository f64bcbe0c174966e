# amaranth: UnusedElaboratable=no
"""cocotb bench of :class:`xnorlearn.hw.popcount.XnorPopcount`.

Also home of the small stream helpers the other benches of this package share
(:func:`pack`, :func:`unpack`, :class:`StreamSource`, :class:`StreamSink`) and
of the case generators the Amaranth-simulation tests reuse.

Parameters (from :func:`xnorlearn.sim.runner.tb_params`): ``lanes``,
``max_fan_in``, ``z_bits``, ``levels_per_stage`` (the HDL parameters, checked
against the DUT's port widths) and ``cases`` (random vectors per test).
"""

import collections
import json
import zlib
from pathlib import Path

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly, RisingEdge

from xnorlearn.sim.runner import default_seed, tb_params
from xnorlearn.sw.golden.literal import preactivation, saturate

__all__ = ["pack", "unpack", "StreamSource", "StreamSink", "record_cases", "tb_rng",
           "vector_words", "random_vectors", "corner_vectors", "expected_result", "TB"]


# -- payload packing ---------------------------------------------------------------------------

def pack(layout, fields):
    """The integer of a ``StructLayout`` payload with the given field values."""
    value = 0
    for name, field in layout:
        v = int(fields[name])
        width = field.shape.width
        if field.shape.signed:
            if not -2 ** (width - 1) <= v < 2 ** (width - 1):
                raise ValueError(f"{name}={v} does not fit signed({width})")
        elif not 0 <= v < 2 ** width:
            raise ValueError(f"{name}={v} does not fit unsigned({width})")
        value |= (v & ((1 << width) - 1)) << field.offset
    return value


def unpack(layout, value):
    """The fields of a ``StructLayout`` payload integer, as a dict of ints."""
    fields = {}
    for name, field in layout:
        width = field.shape.width
        v = (value >> field.offset) & ((1 << width) - 1)
        if field.shape.signed and v >> (width - 1):
            v -= 1 << width
        fields[name] = v
    return fields


# -- stream drivers ----------------------------------------------------------------------------
#
# Both drive at the falling edge and sample in the ReadOnly phase of that same time
# step: the values seen there are the ones the DUT's registers see at the next rising
# edge, whatever order the simulator runs its processes in.

class StreamSource:
    """Drives an Amaranth stream (``<name>__valid/ready/payload``) from a queue.

    ``idle`` is the probability of inserting an idle cycle before each beat; a
    beat, once offered, is held until accepted (stream rule).
    """

    def __init__(self, dut, name, *, rng, idle=0.0):
        self.clk = dut.clk
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.rng = rng
        self.idle = idle
        self.queue = collections.deque()
        self.sent = 0
        self._beat = None
        self.valid.value = 0
        self._task = cocotb.start_soon(self._run())

    def send(self, value):
        self.queue.append(value)

    @property
    def empty(self):
        return not self.queue and self._beat is None

    async def _run(self):
        while True:
            await FallingEdge(self.clk)
            if self._beat is None and self.queue and self.rng.random() >= self.idle:
                self._beat = self.queue.popleft()
            self.valid.value = self._beat is not None
            if self._beat is not None:
                self.payload.value = self._beat
            await ReadOnly()
            if self._beat is not None and self.ready.value:
                self._beat = None
                self.sent += 1

    def stop(self):
        self._task.cancel()


class StreamSink:
    """Accepts an Amaranth stream, ``stall`` the probability of dropping ``ready``.

    Every accepted payload goes to ``callback`` (as an int). It also checks the
    stream rule that a payload, once valid, holds until accepted.
    """

    def __init__(self, dut, name, *, rng, stall=0.0, callback):
        self.clk = dut.clk
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.rng = rng
        self.stall = stall
        self.callback = callback
        self.received = 0
        self.protocol_errors = []
        self.ready.value = 0
        self._task = cocotb.start_soon(self._run())

    async def _run(self):
        held = None
        while True:
            await FallingEdge(self.clk)
            ready = self.rng.random() >= self.stall
            self.ready.value = ready
            await ReadOnly()
            valid = bool(self.valid.value)
            payload = int(self.payload.value) if valid else None
            if held is not None and (not valid or payload != held):
                self.protocol_errors.append(f"payload {held:#x} withdrawn or changed to {payload}")
            held = payload if valid and not ready else None
            if valid and ready:
                self.received += 1
                self.callback(payload)

    def stop(self):
        self._task.cancel()


_cases_recorded = {}


def record_cases(test_name, count):
    """Record ``count`` checked cases of ``test_name`` in ``cases.json`` in the cwd
    (the build directory), which holds the counts of this run's tests so far."""
    _cases_recorded[test_name] = count
    data = dict(_cases_recorded, total=sum(_cases_recorded.values()))
    Path("cases.json").write_text(json.dumps(data, indent=1, sort_keys=True))


def tb_rng(*key):
    """A NumPy generator from ``XNORLEARN_SEED`` and a key (the test and its parameters)."""
    return np.random.default_rng([default_seed(), zlib.crc32(repr(key).encode())])


# -- cases -------------------------------------------------------------------------------------

def vector_words(a, w, lanes, *, rng=None):
    """Split ±1 vectors ``a``, ``w`` into input words (dicts of the word layout).

    With ``rng``, the padding bits of the last word get random values, which
    the unit must ignore.
    """
    k = len(a)
    assert len(w) == k and k >= 1
    words = []
    for start in range(0, k, lanes):
        count = min(lanes, k - start)
        abits = sum(1 << i for i in range(count) if a[start + i] > 0)
        wbits = sum(1 << i for i in range(count) if w[start + i] > 0)
        if rng is not None and count < lanes:
            pad = ((1 << lanes) - 1) ^ ((1 << count) - 1)
            abits |= int.from_bytes(rng.bytes(lanes // 8 + 1), "little") & pad
            wbits |= int.from_bytes(rng.bytes(lanes // 8 + 1), "little") & pad
        words.append({"a": abits, "w": wbits, "count": count, "last": int(start + lanes >= k)})
    return words


def _vector(rng, k, matches):
    a = rng.choice(np.array([-1, 1]), size=k)
    agree = np.zeros(k, dtype=bool)
    agree[rng.choice(k, size=matches, replace=False)] = True
    w = np.where(agree, a, -a)
    return a.tolist(), w.tolist()


def random_vectors(rng, n, *, lanes, max_fan_in):
    """``n`` random ``(a, w)`` pairs: lengths from 1 to ``max_fan_in`` (a third
    within one word), match rates spread from none to all."""
    cases = []
    for _ in range(n):
        if rng.random() < 1 / 3:
            k = int(rng.integers(1, min(lanes, max_fan_in) + 1))
        else:
            k = int(rng.integers(1, max_fan_in + 1))
        matches = int(rng.binomial(k, rng.random()))
        cases.append(_vector(rng, k, matches))
    return cases


def corner_vectors(rng, *, lanes, max_fan_in, z_max):
    """Corner cases: K = 1, K around multiples of ``lanes``, K = ``max_fan_in``,
    all-match and no-match vectors, and z at and beyond ``±z_max``."""
    lengths = {1, 2, lanes - 1, lanes, lanes + 1, 2 * lanes, max_fan_in - 1, max_fan_in}
    cases = []
    for k in sorted(x for x in lengths if 1 <= x <= max_fan_in):
        cases += [_vector(rng, k, k), _vector(rng, k, 0), _vector(rng, k, int(rng.integers(k + 1)))]
    if z_max is not None:
        for z in (z_max - 1, z_max, z_max + 1, z_max + 2):
            for target in (z, -z):
                ks = [k for k in range(abs(target), max_fan_in + 1) if (k - target) % 2 == 0 and k]
                if ks:
                    k = int(rng.choice(ks))
                    cases.append(_vector(rng, k, (target + k) // 2))
    return cases


def expected_result(a, w, z_max):
    """Golden ``{"z", "z_sat"}`` of one vector pair."""
    z = preactivation(a, w)
    return {"z": z, "z_sat": saturate(z, z_max)}


# -- bench -------------------------------------------------------------------------------------

class TB:
    """Clock, reset, an input source, an output sink and an in-order scoreboard."""

    def __init__(self, dut, *, idle=0.0, stall=0.0, test_name=""):
        from xnorlearn.hw.popcount import XnorPopcount

        self.dut = dut
        self.params = tb_params()
        hdl = {k: self.params[k] for k in ("lanes", "max_fan_in", "z_bits", "levels_per_stage")
               if k in self.params}
        model = XnorPopcount(**hdl)
        self.word_layout = model.word_layout
        self.result_layout = model.result_layout
        self.lanes = model.lanes
        self.max_fan_in = model.max_fan_in
        self.z_max = model.z_max
        self.latency = model.latency
        for port, layout in (("i__payload", self.word_layout), ("o__payload", self.result_layout)):
            width = len(getattr(dut, port))
            if width != layout.size:
                raise AssertionError(f"DUT {port} is {width} bits, "
                                     f"parameters {hdl} give {layout.size}")
        self.rng = tb_rng(test_name, sorted(self.params.items()))
        self.expected = collections.deque()
        self.mismatches = []
        self.checked = 0
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        self.source = StreamSource(dut, "i", rng=self.rng, idle=idle)
        self.sink = StreamSink(dut, "o", rng=self.rng, stall=stall, callback=self._check)

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 3)
        await FallingEdge(self.dut.clk)
        self.dut.rst.value = 0

    def send(self, a, w):
        self.expected.append((len(a), expected_result(a, w, self.z_max)))
        for word in vector_words(a, w, self.lanes, rng=self.rng):
            self.source.send(pack(self.word_layout, word))

    def _check(self, value):
        got = unpack(self.result_layout, value)
        if not self.expected:
            self.mismatches.append(f"unexpected result {got}")
            return
        k, want = self.expected.popleft()
        if got != want:
            self.mismatches.append(f"result {self.checked} (K={k}): got {got}, expected {want}")
        self.checked += 1

    async def drain(self, max_cycles):
        """Wait until every expected result has come (at most ``max_cycles``), then
        a few cycles more to catch unexpected ones. Returns the cycles waited."""
        cycles = 0
        while self.expected and cycles < max_cycles:
            await RisingEdge(self.dut.clk)
            cycles += 1
        await ClockCycles(self.dut.clk, self.latency + 4)
        return cycles

    def finish(self, test_name):
        self.source.stop()
        self.sink.stop()
        problems = self.mismatches[:10] + self.sink.protocol_errors[:10]
        if self.expected:
            problems.append(f"{len(self.expected)} results missing")
        assert not problems, "\n".join(problems)
        self.dut._log.info("checked %d cases (lanes=%d, max_fan_in=%d, z_max=%s)",
                           self.checked, self.lanes, self.max_fan_in, self.z_max)
        record_cases(test_name, self.checked)


async def _run(dut, test_name, *, idle, stall):
    tb = TB(dut, idle=idle, stall=stall, test_name=test_name)
    await tb.reset()
    cases = corner_vectors(tb.rng, lanes=tb.lanes, max_fan_in=tb.max_fan_in, z_max=tb.z_max)
    cases += random_vectors(tb.rng, tb.params.get("cases", 200), lanes=tb.lanes,
                            max_fan_in=tb.max_fan_in)
    for a, w in cases:
        tb.send(a, w)
    words = len(tb.source.queue)
    cycles = await tb.drain(int(words / (1 - idle) / (1 - stall) * 3) + 1000)
    dut._log.info("%d words in %d cycles", words, cycles)
    tb.finish(test_name)
    assert tb.checked == len(cases)
    if idle == 0 and stall == 0:
        # One word per cycle: the words, the latency and a cycle of slack.
        assert cycles <= words + tb.latency + 2, f"{words} words took {cycles} cycles"


@cocotb.test(timeout_time=10, timeout_unit="ms")
async def test_back_to_back(dut):
    """Random and corner vectors back to back, no idle cycles, output always ready."""
    await _run(dut, "test_back_to_back", idle=0.0, stall=0.0)


@cocotb.test(timeout_time=10, timeout_unit="ms")
async def test_idle_and_backpressure(dut):
    """Idle cycles on the input and backpressure on the output."""
    await _run(dut, "test_idle_and_backpressure", idle=0.3, stall=0.5)


@cocotb.test(timeout_time=10, timeout_unit="ms")
async def test_heavy_backpressure(dut):
    """Output rarely ready: the result FIFO fills and the input must wait."""
    await _run(dut, "test_heavy_backpressure", idle=0.0, stall=0.85)
