# amaranth: UnusedElaboratable=no
"""cocotb bench of :class:`xnorlearn.hw.selector.GroupSelector`.

Also home of the random case generator that the Amaranth simulation test reuses.

Parameters (:func:`~xnorlearn.sim.runner.tb_params`): ``z_bits``, ``max_width``,
``cases`` (random patterns per test, default 150).
"""

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles

from xnorlearn.hw.selector import GroupSelector
from xnorlearn.sim.runner import tb_params
from xnorlearn.sim.streams import (Scoreboard, StreamMonitor, StreamSink, StreamSource, case_rng,
                                   record_cases, wait_until)
from xnorlearn.sw.golden.literal import saturate, select_easiest

__all__ = ["selector_cases", "selector_expected", "selector_items", "TB"]

SELECTOR_KINDS = ("random", "near0", "ties", "nonneg", "extreme", "gamma1", "gammaK", "full")


def _divisors(n):
    return [d for d in range(1, n + 1) if n % d == 0]


def selector_cases(rng, z_bits, max_width, count, kinds=SELECTOR_KINDS):
    """Random patterns for :class:`GroupSelector`, mixing corner kinds.

    Each case is a dict with ``gamma``, ``z`` (the saturated pre-activations,
    from :func:`~xnorlearn.sw.golden.literal.saturate` of exact values up to
    twice the bound) and ``rho`` (±1). The width is a multiple of ``gamma``.
    Kinds: ``random``; ``near0`` (``z`` in -2..2: ``delta = -1``, zeros, ties);
    ``ties`` (one magnitude, random signs); ``nonneg`` (no negative ``delta``);
    ``extreme`` (``z`` at ``±z_max``, now and then ``-2**(z_bits-1)``); ``gamma1``;
    ``gammaK`` (one group); ``full`` (width ``max_width``).
    """
    z_max = (1 << (z_bits - 1)) - 1
    cases = []
    for n in range(count):
        kind = kinds[n % len(kinds)] if n < len(kinds) else kinds[rng.integers(len(kinds))]
        K = max_width if kind == "full" else int(rng.integers(1, max_width + 1))
        divisors = _divisors(K)
        gamma = {"gamma1": 1, "gammaK": K}.get(kind, int(rng.choice(divisors)))
        rho = rng.choice([-1, 1], size=K)
        if kind == "near0":
            z = rng.integers(-2, 3, size=K)
        elif kind == "ties":
            z = rng.choice([-1, 1], size=K) * rng.integers(0, z_max + 1)
        elif kind == "nonneg":
            z = rho * rng.integers(0, 2 * z_max + 1, size=K)
        elif kind == "extreme":
            z = rng.choice([-1, 1], size=K) * rng.integers(z_max, 2 * z_max + 2, size=K)
        else:
            z = rng.integers(-2 * z_max, 2 * z_max + 1, size=K)
        z = [saturate(int(v), z_max) for v in z]
        if kind == "extreme" and rng.random() < 0.5:
            z[int(rng.integers(K))] = -(1 << (z_bits - 1))
        cases.append({"gamma": gamma, "z": z, "rho": [int(v) for v in rho]})
    return cases


def selector_expected(case, gamma=None):
    """Golden output items ``(index, valid, last)`` of one pattern (index 0 when not valid)."""
    gamma = case["gamma"] if gamma is None else gamma
    picks = select_easiest([z * r for z, r in zip(case["z"], case["rho"])], gamma)
    return [(0 if k is None else k, int(k is not None), int(g == len(picks) - 1))
            for g, k in enumerate(picks)]


def selector_items(case):
    """The input payload fields of a pattern, one dict per neuron."""
    K = len(case["z"])
    return [{"z": case["z"][k], "rho": int(case["rho"][k] > 0), "last": int(k == K - 1)}
            for k in range(K)]


class TB:
    """Clock, reset, stream models and scoreboard around a ``GroupSelector``.

    The input monitor rebuilds each accepted pattern (with the ``gamma`` held on
    the port), runs the golden model on it and queues the expected group items
    in the scoreboard, which compares them in order with the items the output
    sink takes. A group leaves before its pattern (and so the golden answer) is
    complete, so up to ``max_width`` outputs may wait for their expectation.
    """

    def __init__(self, dut, *, test_name, idle=0.0, backpressure=0.0):
        params = tb_params()
        self.dut = dut
        self.block = GroupSelector(z_bits=params["z_bits"], max_width=params["max_width"])
        got, want = len(dut.gamma), self.block.gamma.shape().width
        assert got == want, f"DUT gamma has {got} bits, the parameters give {want}"
        self.z_bits = self.block.z_bits
        self.max_width = self.block.max_width
        self.rng = case_rng(test_name)
        source_rng, sink_rng = self.rng.spawn(2)
        self.scoreboard = Scoreboard(max_early=self.max_width)
        self.pattern = []
        self.patterns = 0
        Clock(dut.clk, 10, unit="ns").start()
        dut.rst.value = 1
        dut.gamma.value = 1
        self.source = StreamSource(dut, "i", dut.clk, self.block.input_layout, rng=source_rng,
                                   idle=idle, sideband={"gamma": dut.gamma})
        self.monitor = StreamMonitor(dut, "i", dut.clk, self.block.input_layout, self._on_input,
                                     sideband={"gamma": dut.gamma})
        self.sink = StreamSink(dut, "o", dut.clk, self.block.output_layout,
                               lambda out: self.scoreboard.observe((out["index"], out["valid"],
                                                                    out["last"])),
                               rng=sink_rng, backpressure=backpressure)

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 3)
        self.dut.rst.value = 0

    def send(self, case):
        """Queue one pattern on the input stream, holding its ``gamma`` on the port."""
        for item in selector_items(case):
            self.source.send(item, gamma=case["gamma"])

    def _on_input(self, item, *, gamma):
        self.pattern.append((item["z"], item["rho"], gamma))
        if item["last"]:
            gammas = {g for _, _, g in self.pattern}
            assert len(gammas) == 1, f"gamma changed within a pattern: {gammas}"
            case = {"gamma": gammas.pop(), "z": [z for z, _, _ in self.pattern],
                    "rho": [1 if r else -1 for _, r, _ in self.pattern]}
            for group in selector_expected(case):
                self.scoreboard.expect(group)
            self.pattern = []
            self.patterns += 1

    async def run(self, cases):
        """Send ``cases`` and wait until every group item has been checked."""
        groups = sum(len(case["z"]) // case["gamma"] for case in cases)
        for case in cases:
            self.send(case)
        await self.source.wait()
        await wait_until(self.dut.clk, lambda: self.scoreboard.checked >= groups)
        await ClockCycles(self.dut.clk, 10)
        self.scoreboard.check_done()
        assert self.patterns == len(cases)
        assert self.sink.count == groups, f"{self.sink.count} outputs for {groups} groups"
        return groups


async def _check(dut, test, *, kinds=SELECTOR_KINDS, idle=0.0, backpressure=0.0):
    tb = TB(dut, test_name=test, idle=idle, backpressure=backpressure)
    await tb.reset()
    count = tb_params().get("cases", 150)
    cases = selector_cases(tb.rng, tb.z_bits, tb.max_width, count, kinds)
    groups = await tb.run(cases)
    record_cases(dut, test, len(cases), groups=groups)


@cocotb.test(timeout_time=20, timeout_unit="ms")
async def test_random(dut):
    """Random patterns back to back, output always ready."""
    await _check(dut, "test_random")


@cocotb.test(timeout_time=20, timeout_unit="ms")
async def test_stalls(dut):
    """Random patterns with idle input cycles and output backpressure."""
    await _check(dut, "test_stalls", idle=0.3, backpressure=0.5)


@cocotb.test(timeout_time=20, timeout_unit="ms")
async def test_corners(dut):
    """Near-zero, tied, saturated and candidate-free groups, gamma 1 and K, backpressure."""
    await _check(dut, "test_corners", kinds=("near0", "ties", "nonneg", "extreme", "gamma1",
                                             "gammaK", "full"), backpressure=0.7)
