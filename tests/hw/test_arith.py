# amaranth: UnusedElaboratable=no
"""Products from logic (xnorlearn.hw._arith): the registered adder tree against Python's
product, with a constant and with a signal multiplier, and its latency; the division by
a constant against Python's divmod."""

import pytest
from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator

from xnorlearn.hw._arith import adder_tree, divmod_const, shifted_terms
from xnorlearn.sw.golden.prng import GOLDEN


def _run(rng, multiplier_bits, const, latency, width=32, items=200):
    m = Module()
    x = Signal(16)
    y = Signal(max(multiplier_bits, 1))
    terms = shifted_terms(x, const if const is not None else y, width)
    total, levels = adder_tree(m, terms, width, "t", latency=latency)
    xs = [int(v) for v in rng.integers(0, 1 << 16, size=items)]
    ys = [int(v) for v in rng.integers(0, 1 << multiplier_bits, size=items)]
    got = []

    async def bench(ctx):
        for k in range(items + levels):
            if k < items:
                ctx.set(x, xs[k])
                ctx.set(y, ys[k])
            if k >= levels:
                got.append(ctx.get(total))
            await ctx.tick()

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    want = [(a * (const if const is not None else b)) % (1 << width) for a, b in zip(xs, ys)]
    return got, want, levels


def test_constant_product(rng):
    got, want, levels = _run(rng, 1, GOLDEN, None)
    assert got == want
    assert levels == 3                   # 20 set bits, three at a time: 7, 3, 1


@pytest.mark.parametrize("bits, latency", [(5, 2), (5, 4), (2, 2), (1, None)])
def test_signal_product(rng, bits, latency):
    got, want, levels = _run(rng, bits, None, latency, width=13)
    assert got == want
    if latency is not None:
        assert levels == latency


def test_latency_below_the_levels():
    with pytest.raises(ValueError, match="t: an adder tree of 3 levels cannot have latency 2"):
        adder_tree(Module(), shifted_terms(Signal(16), GOLDEN, 32), 32, "t", latency=2)


@pytest.mark.parametrize("divisor, max_value", [
    (1, 40), (32, 300), (96, 299), (160, 943), (160, 159), (5, 24), (7, 3)])
def test_divmod_by_a_constant(divisor, max_value):
    """Every value up to ``max_value``: quotient and remainder as Python's."""
    m = Module()
    x = Signal(range(max_value + 1))
    q, r = divmod_const(x, divisor, max_value)
    got = []

    async def bench(ctx):
        for v in range(max_value + 1):
            ctx.set(x, v)
            got.append((ctx.get(q), ctx.get(r)))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert got == [divmod(v, divisor) for v in range(max_value + 1)]


def test_divmod_refuses_a_zero_divisor():
    with pytest.raises(ValueError, match="divisor must be at least 1, got 0"):
        divmod_const(Signal(4), 0, 15)
