# amaranth: UnusedElaboratable=no
"""CpSequencer with real memories: random pick lists, classifier rows and labels, several
runs back to back; every word's H address, count, rho and A address compared with the
pick list's meaning, and the spacing of a neuron picked again checked against the
write-back latency."""

import pytest
from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from xnorlearn.hw.cp_sequencer import CpSequencer, pick_layout

MAX_BATCH, MAX_WIDTH, CLASSES, LAYERS = 12, 40, 10, 2


class Harness(wiring.Component):
    """The sequencer wired to its three memories, as in the core."""

    def __init__(self, **kwargs):
        self.dut = CpSequencer(**kwargs)
        self.picks_mem = Memory(shape=self.dut.pick_layout, depth=self.dut.list_depth, init=[])
        self.rows_mem = Memory(shape=CLASSES, depth=self.dut.row_depth, init=[])
        self.labels_mem = Memory(shape=4, depth=MAX_BATCH, init=[])
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = self.dut
        m.submodules.picks = self.picks_mem
        m.submodules.rows = self.rows_mem
        m.submodules.labels = self.labels_mem
        wiring.connect(m, self.dut.pick_rd, self.picks_mem.read_port())
        wiring.connect(m, self.dut.row_rd, self.rows_mem.read_port())
        wiring.connect(m, self.dut.label_rd, self.labels_mem.read_port())
        return m


def expected(run, rows, labels, lanes, a_words):
    """The words of ``run``'s pick list: ``(h_addr, count, rho, a_addr, k)``; word ``w``
    of pattern ``mu`` is at ``a_base + mu * a_words + w`` of ``A``."""
    words, last, base = run["words"], run["last"], run["base"]
    out = []
    for mu, k in run["picks"]:
        rho = (rows[run["row_base"] + k] >> labels[mu]) & 1
        for w in range(words):
            out.append((base + k * words + w, last if w == words - 1 else lanes, rho,
                        run["a_base"] + mu * a_words + w, k))
    return out


def random_runs(rng, lanes, a_words, n, repeats):
    runs = []
    for _ in range(n):
        layer = int(rng.integers(0, LAYERS))
        words = int(rng.integers(1, a_words + 1))
        count = int(rng.choice([0, 1, int(rng.integers(2, 30))]))
        picks = []
        for _ in range(count):
            if repeats and picks and rng.random() < 0.3:
                k = picks[-int(rng.integers(1, min(3, len(picks)) + 1))][1]
            elif picks:
                recent = {kk for _, kk in picks[-8:]}
                k = int(rng.choice([kk for kk in range(MAX_WIDTH) if kk not in recent]))
            else:
                k = int(rng.integers(0, MAX_WIDTH))
            picks.append((int(rng.integers(0, MAX_BATCH)), k))
        runs.append({"layer": layer, "words": words, "last": int(rng.integers(1, lanes + 1)),
                     "base": int(rng.integers(0, 300)), "picks": picks,
                     "row_base": layer * MAX_WIDTH, "list_base": layer * 64,
                     "a_base": layer * 100, "repeats": repeats,
                     "delay": int(rng.integers(0, 4))})
    return runs


@pytest.mark.parametrize("lanes, a_words, hazard", [(32, 4, 6), (64, 3, 6), (32, 1, 1),
                                                    (64, 4, 3)])
@pytest.mark.parametrize("repeats", [False, True])
def test_against_pick_lists(rng, lanes, a_words, hazard, repeats):
    top = Harness(lanes=lanes, max_batch=MAX_BATCH, max_width=MAX_WIDTH, classes=CLASSES,
                  a_words=a_words, addr_bits=10, a_depth=LAYERS * 100,
                  list_depth=LAYERS * 64, row_depth=LAYERS * MAX_WIDTH, hazard=hazard)
    dut = top.dut
    rows = [int(v) for v in rng.integers(0, 1 << CLASSES, size=LAYERS * MAX_WIDTH)]
    labels = [int(v) for v in rng.integers(0, CLASSES, size=MAX_BATCH)]
    runs = random_runs(rng, lanes, a_words, 8, repeats)
    seen = []

    async def bench(ctx):
        for i, v in enumerate(rows):
            ctx.set(top.rows_mem.data[i], v)
        for i, v in enumerate(labels):
            ctx.set(top.labels_mem.data[i], v)
        for run in runs:
            for i, (mu, k) in enumerate(run["picks"]):
                ctx.set(top.picks_mem.data[run["list_base"] + i], {"mu": mu, "k": k})
            ctx.set(dut.clear, 1)
            ctx.set(dut.run, 0)
            ctx.set(dut.picks, len(run["picks"]))
            for name in ("list_base", "row_base", "a_base"):
                ctx.set(getattr(dut, name), run[name])
            ctx.set(dut.layer, {"words": run["words"], "words_m1": run["words"] - 1,
                                "last": run["last"], "base": run["base"]})
            await ctx.tick().repeat(2)
            ctx.set(dut.clear, 0)
            for _ in range(run["delay"]):
                await ctx.tick()
            ctx.set(dut.run, 1)
            words, issued, t = [], None, 0
            limit = 20 + len(run["picks"]) * (run["words"] + hazard + 8)
            while True:
                assert t < limit, f"not done after {t} cycles"
                if ctx.get(dut.o.valid):
                    p = ctx.get(dut.o.payload)
                    assert issued is not None and issued[0] == p.addr, "h_addr did not lead"
                    words.append((p.addr, p.count, p.rho, issued[1], t))
                if ctx.get(dut.done):
                    break
                issued = ((ctx.get(dut.h_addr), ctx.get(dut.a_addr))
                          if ctx.get(dut.active) else None)
                await ctx.tick()
                t += 1
            await ctx.tick()
            assert not ctx.get(dut.o.valid), "a word after done"
            seen.append(words)

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()

    for run, words in zip(runs, seen):
        want = expected(run, rows, labels, lanes, a_words)
        assert [w[:4] for w in words] == [w[:4] for w in want], run
        # A neuron picked again reads H only after the write-back of its last word.
        last_t = {}
        for (*_, t), (*_, k) in zip(words, want):
            prev = last_t.get(k)
            if prev is not None and t - prev > 1:
                assert t - prev > hazard, f"neuron {k} issued {t - prev} cycles apart"
            last_t[k] = t
        if not run["repeats"] and words:
            # No neuron within a few picks of itself: the words stream without a gap.
            assert words[-1][-1] - words[0][-1] == len(words) - 1


def test_pick_layout():
    layout = pick_layout(max_batch=8, max_width=5)
    assert set(layout.members) == {"mu", "k"}
    assert layout.size == 3 + 3
    with pytest.raises(TypeError, match="patterns"):
        pick_layout(max_batch=8, max_width=5, patterns=3)


@pytest.mark.parametrize("kwargs, error, text", [
    ({"lanes": 16}, ValueError, "lanes"),
    ({"patterns": 1}, TypeError, "patterns"),
    ({"hazard": 0}, ValueError, "hazard"),
    ({"classes": 2.5}, TypeError, "classes"),
])
def test_bad_parameters(kwargs, error, text):
    args = {"lanes": 64, "max_batch": 8, "max_width": 5, "classes": 10,
            "a_words": 2, "addr_bits": 8, "a_depth": 40, "list_depth": 40, "row_depth": 10,
            "hazard": 6, **kwargs}
    with pytest.raises(error, match=text):
        CpSequencer(**args)
