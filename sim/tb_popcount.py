# amaranth: UnusedElaboratable=no
"""cocotb bench of :class:`xnorlearn.hw.popcount.XnorPopcount`.

Also home of the case generators that the Amaranth-simulation tests reuse.

Parameters (from :func:`xnorlearn.sim.runner.tb_params`): ``lanes``,
``max_fan_in``, ``z_bits``, ``levels_per_stage`` (the HDL parameters, checked
against the DUT's port widths) and ``cases`` (random vectors per test).
"""

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles

from xnorlearn.sim.runner import tb_params
from xnorlearn.sim.streams import (Scoreboard, StreamSink, StreamSource, case_rng, record_cases,
                                   wait_until)
from xnorlearn.sw.golden.literal import preactivation, saturate

__all__ = ["vector_words", "random_vectors", "corner_vectors", "expected_result", "TB"]


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
    """Clock, reset, a word source on ``i``, a result sink on ``o`` and an in-order
    scoreboard fed with the golden result of each vector pair as it is sent."""

    def __init__(self, dut, *, test_name, idle=0.0, backpressure=0.0):
        from xnorlearn.hw.popcount import XnorPopcount

        self.dut = dut
        self.params = tb_params()
        model = XnorPopcount(**{k: self.params[k] for k in ("lanes", "max_fan_in", "z_bits",
                                                            "levels_per_stage") if k in self.params})
        self.lanes = model.lanes
        self.max_fan_in = model.max_fan_in
        self.z_max = model.z_max
        self.latency = model.latency
        self.rng = case_rng(test_name)
        source_rng, sink_rng = self.rng.spawn(2)
        self.scoreboard = Scoreboard()
        Clock(dut.clk, 10, unit="ns").start()
        self.source = StreamSource(dut, "i", dut.clk, model.word_layout, rng=source_rng, idle=idle)
        self.sink = StreamSink(dut, "o", dut.clk, model.result_layout, self.scoreboard.observe,
                               rng=sink_rng, backpressure=backpressure)

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 3)
        self.dut.rst.value = 0

    def send(self, a, w):
        self.scoreboard.expect(expected_result(a, w, self.z_max), note=f"K={len(a)}")
        for word in vector_words(a, w, self.lanes, rng=self.rng):
            self.source.send(word)

    async def drain(self, max_cycles):
        """Wait until every expected result has come (at most ``max_cycles``), then
        a few cycles more to catch unexpected ones. Returns the cycles waited."""
        cycles = await wait_until(self.dut.clk, lambda: not self.scoreboard.pending,
                                  max_cycles=max_cycles)
        await ClockCycles(self.dut.clk, self.latency + 4)
        self.scoreboard.check_done()
        return cycles


async def _run(dut, test_name, *, idle, backpressure):
    tb = TB(dut, test_name=test_name, idle=idle, backpressure=backpressure)
    await tb.reset()
    cases = corner_vectors(tb.rng, lanes=tb.lanes, max_fan_in=tb.max_fan_in, z_max=tb.z_max)
    cases += random_vectors(tb.rng, tb.params.get("cases", 200), lanes=tb.lanes,
                            max_fan_in=tb.max_fan_in)
    for a, w in cases:
        tb.send(a, w)
    words = sum(-(-len(a) // tb.lanes) for a, _ in cases)
    cycles = await tb.drain(int(words / (1 - idle) / (1 - backpressure) * 3) + 1000)
    dut._log.info("%d words in %d cycles", words, cycles)
    assert tb.scoreboard.checked == len(cases)
    record_cases(dut, test_name, tb.scoreboard.checked, lanes=tb.lanes,
                 max_fan_in=tb.max_fan_in, z_max=tb.z_max)
    if idle == 0 and backpressure == 0:
        # One word per cycle: the words, the latency and a cycle of slack.
        assert cycles <= words + tb.latency + 2, f"{words} words took {cycles} cycles"


@cocotb.test(timeout_time=10, timeout_unit="ms")
async def test_back_to_back(dut):
    """Random and corner vectors back to back, no idle cycles, output always ready."""
    await _run(dut, "test_back_to_back", idle=0.0, backpressure=0.0)


@cocotb.test(timeout_time=10, timeout_unit="ms")
async def test_idle_and_backpressure(dut):
    """Idle cycles on the input and backpressure on the output."""
    await _run(dut, "test_idle_and_backpressure", idle=0.3, backpressure=0.5)


@cocotb.test(timeout_time=10, timeout_unit="ms")
async def test_heavy_backpressure(dut):
    """Output rarely ready: the result FIFO fills and the input must wait."""
    await _run(dut, "test_heavy_backpressure", idle=0.0, backpressure=0.85)
