# amaranth: UnusedElaboratable=no
"""PickDrain with a real pick list memory: random selector outputs and update decisions
for minibatches of every size (partial last groups included), producers paced by
``room`` and pausing at random, flushes between layers; the whole pick list compared with
the golden order (pattern, then group, only the patterns that need an update)."""

import pytest
from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from xnorlearn.hw.cp_sequencer import pick_layout
from xnorlearn.hw.pick_drain import PickDrain

MAX_BATCH, MAX_WIDTH, MAX_GROUPS, LAYERS = 11, 24, 6, 2


class Harness(wiring.Component):
    def __init__(self, *, patterns, slack=0):
        self.dut = PickDrain(patterns=patterns, max_batch=MAX_BATCH, max_width=MAX_WIDTH,
                             max_groups=MAX_GROUPS, list_depth=LAYERS * MAX_BATCH * MAX_GROUPS,
                             slack=slack)
        self.mem = Memory(shape=self.dut.pick_wr.data.shape(), depth=self.dut.list_depth,
                          init=[])
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut, m.submodules.mem = self.dut, self.mem
        wiring.connect(m, self.dut.pick_wr, self.mem.write_port())
        return m


def golden_list(picks, decisions):
    """The pick list the CP step of the golden model walks: ``(mu, k)``."""
    out = []
    for mu, groups in enumerate(picks):
        if decisions[mu]:
            out += [(mu, k) for k in groups if k is not None]
    return out


@pytest.mark.parametrize("patterns", [1, 3, 4])
@pytest.mark.parametrize("pause", [0.0, 0.5])
@pytest.mark.parametrize("late", [0, 12])
def test_against_golden_order(rng, patterns, pause, late):
    """``late``: the producers see ``room`` that many cycles after it changes (the
    drain has that much ``slack``)."""
    top = Harness(patterns=patterns, slack=late)
    dut, G = top.dut, patterns
    # The entries are the sequencer's: the pattern and the neuron, whatever the lanes.
    assert dut.pick_wr.data.shape() == pick_layout(max_batch=MAX_BATCH, max_width=MAX_WIDTH)
    seen = {"entries": 0, "layers": 0, "full": 0}

    async def bench(ctx):
        for layer in range(20):
            # The first layer is the largest, and its first decision comes late: the
            # FIFOs fill and `room` falls whatever the seed.
            full = layer == 0
            bs = MAX_BATCH if full else int(rng.integers(1, MAX_BATCH + 1))
            ngroups = MAX_GROUPS if full else int(rng.integers(1, MAX_GROUPS + 1))
            picks = [[int(rng.integers(0, MAX_WIDTH)) if rng.random() < 0.7 else None
                      for _ in range(ngroups)] for _ in range(bs)]
            decisions = [bool(rng.random() < 0.6) for _ in range(bs)]
            base = (layer % LAYERS) * MAX_BATCH * MAX_GROUPS
            ctx.set(dut.bs, bs)
            ctx.set(dut.list_base, base)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            # The producers: per group of patterns, one selector item per lane and group
            # of neurons (all lanes together), then, a few cycles later, the decisions.
            pending_dec = []
            t = 0
            rooms = [True] * (late + 1)

            async def tick():
                # One cycle; a decision word that is due goes out in the next one.
                nonlocal t
                await ctx.tick()
                t += 1
                rooms.append(ctx.get(dut.room))
                for j in range(G):
                    ctx.set(dut.picks[j].valid, 0)
                ctx.set(dut.decisions.valid, 0)
                if pending_dec and pending_dec[0][0] <= t:
                    ctx.set(dut.decisions.valid, 1)
                    ctx.set(dut.decisions.payload, pending_dec.pop(0)[1])

            for g0 in range(0, bs, G):
                lanes = range(min(G, bs - g0))
                for grp in range(ngroups):
                    while not rooms[-1 - late] or rng.random() < pause:
                        await tick()
                    for j in range(G):
                        k = picks[g0 + j][grp] if j in lanes else None
                        ctx.set(dut.picks[j].valid, j in lanes)
                        ctx.set(dut.picks[j].payload, {"index": k or 0, "valid": k is not None,
                                                       "last": grp == ngroups - 1})
                    if grp == ngroups - 1:
                        delay = 60 if full and g0 == 0 else int(rng.integers(1, 30))
                        pending_dec.append((t + delay,
                                            sum(decisions[g0 + j] << j for j in lanes)))
                    await tick()
            while pending_dec:
                await tick()
            seen["full"] += rooms.count(False)
            await tick()
            ctx.set(dut.decisions.valid, 0)
            for _ in range(300):
                if ctx.get(dut.drained) == bs:
                    break
                await ctx.tick()
            assert ctx.get(dut.drained) == bs, "the picks were not all drained"
            await ctx.tick()
            want = golden_list(picks, decisions)
            assert ctx.get(dut.count) == len(want)
            got = []
            for i in range(len(want)):
                e = ctx.get(top.mem.data[base + i])
                got.append((e.mu, e.k))
            assert got == want, f"layer {layer}"
            seen["entries"] += len(want)
            seen["layers"] += 1
            if layer % 5 == 4:
                ctx.set(dut.flush, 1)
                await ctx.tick()
                ctx.set(dut.flush, 0)

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert seen["layers"] == 20 and seen["entries"] > 60
    assert seen["full"] > 0, "room never fell: the FIFOs were not filled"


@pytest.mark.parametrize("kwargs, error, text", [
    ({"patterns": 65}, ValueError, "patterns"),
    ({"max_groups": 0}, ValueError, "max_groups"),
    ({"list_depth": 1.5}, TypeError, "list_depth"),
])
def test_bad_parameters(kwargs, error, text):
    args = {"patterns": 2, "max_batch": 8, "max_width": 5, "max_groups": 4, "list_depth": 64,
            **kwargs}
    with pytest.raises(error, match=text):
        PickDrain(**args)
