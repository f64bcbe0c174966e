# amaranth: UnusedElaboratable=no
"""RegisterSlice: order, no loss or duplication under stalls, one word per cycle, flush."""

import pytest
from amaranth.lib import data
from amaranth.sim import Simulator

from xnorlearn.hw.slice import RegisterSlice

LAYOUT = data.StructLayout({"data": 32, "last": 1})


def run(dut, words, rng, *, idle, stall, flush_at=None, max_cycles=20_000):
    """Send ``words`` through ``dut`` with random idle input cycles and output stalls;
    returns (words received, cycles, how often o changed while stalled)."""
    got, state = [], {"cycles": 0, "withdrawn": 0}

    async def bench(ctx):
        pending = list(words)
        held = None
        for cycle in range(max_cycles):
            send = bool(pending) and rng.random() >= idle
            ctx.set(dut.i.valid, send)
            if pending:
                ctx.set(dut.i.payload.as_value(), pending[0])
            ready = rng.random() >= stall
            ctx.set(dut.o.ready, ready)
            ctx.set(dut.flush, cycle == flush_at)
            await ctx.delay(1e-9)
            i_ready, o_valid = ctx.get(dut.i.ready), ctx.get(dut.o.valid)
            o_word = ctx.get(dut.o.payload.as_value())
            if held is not None and (not o_valid or o_word != held):
                state["withdrawn"] += 1
            await ctx.tick()
            if send and i_ready:
                pending.pop(0)
            held = None
            if o_valid and ready:
                got.append(o_word)
            elif o_valid:
                held = o_word
            if not pending and cycle > 4 and not o_valid and not ctx.get(dut.o.valid):
                state["cycles"] = cycle
                break
        else:
            raise AssertionError(f"not drained in {max_cycles} cycles")

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return got, state["cycles"], state["withdrawn"]


@pytest.mark.parametrize("idle, stall", [(0.0, 0.0), (0.3, 0.0), (0.0, 0.5), (0.4, 0.6)])
def test_order_and_stalls(rng, idle, stall):
    dut = RegisterSlice(shape=LAYOUT)
    words = [int(x) for x in rng.integers(0, 1 << 33, size=400)]
    got, cycles, withdrawn = run(dut, words, rng, idle=idle, stall=stall)
    assert got == words
    assert withdrawn == 0, "o.payload changed or o.valid fell while o was stalled"
    if idle == stall == 0:
        assert cycles <= len(words) + 3, f"{len(words)} words took {cycles} cycles"


def test_flush_drops_held_words(rng):
    dut = RegisterSlice(shape=8)
    # Output stalled throughout: two words fill the slice, the flush drops them, and
    # the words sent after it come through.
    got = []

    async def bench(ctx):
        ctx.set(dut.o.ready, 0)
        for value in (1, 2):
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.payload, value)
            await ctx.tick()
        ctx.set(dut.i.valid, 0)
        assert ctx.get(dut.o.valid) and not ctx.get(dut.i.ready)
        ctx.set(dut.flush, 1)
        await ctx.tick()
        ctx.set(dut.flush, 0)
        assert not ctx.get(dut.o.valid) and ctx.get(dut.i.ready)
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.i.payload, 3)
        ctx.set(dut.o.ready, 1)
        await ctx.tick()
        ctx.set(dut.i.valid, 0)
        for _ in range(3):
            if ctx.get(dut.o.valid):
                got.append(ctx.get(dut.o.payload))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert got == [3]


def test_bad_shape():
    with pytest.raises(TypeError, match="shape-castable"):
        RegisterSlice(shape="wide")
