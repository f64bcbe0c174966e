# amaranth: UnusedElaboratable=no
"""ForwardSource with the core's weight store and an A memory of one ``lanes``-bit word
per pattern and word: random layers and minibatches, the load racing the forward pass,
backpressure and flushes; every word that leaves compared with the W word and the
patterns' A words its position in the layer names, every read of A with the patterns
loaded, and the spacing of the words that end an output word with ``end_gap``."""

from collections import Counter

import pytest
from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator
from amaranth.utils import bits_for

from xnorlearn.hw.fwd_source import ForwardSource
from xnorlearn.hw.weights import WeightStore

W_DEPTH, MAX_BATCH, MAX_WIDTH, A_WORDS = 64, 10, 6, 3
# Room for the largest minibatch's words (a_base + bs * A_WORDS) and a random base.
A_DEPTH = MAX_BATCH * A_WORDS + 18


class Harness(wiring.Component):
    def __init__(self, *, lanes, patterns, end_gap=1, max_width=MAX_WIDTH, w_depth=W_DEPTH):
        self.dut = ForwardSource(lanes=lanes, patterns=patterns, max_batch=MAX_BATCH,
                                 max_width=max_width, a_words=A_WORDS,
                                 addr_bits=max(bits_for(w_depth - 1), 1), a_depth=A_DEPTH,
                                 end_gap=end_gap)
        self.weights = WeightStore(lanes=lanes, h_bits=2, depth=w_depth)
        self.a_mem = Memory(shape=lanes, depth=A_DEPTH, init=[])
        self.w_depth = w_depth
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut, m.submodules.weights = self.dut, self.weights
        m.submodules.a_mem = self.a_mem
        wiring.connect(m, self.dut.a_rd, self.a_mem.read_port())
        m.d.comb += [self.weights.w_rd_addr.eq(self.dut.w_rd.addr),
                     self.weights.w_rd_en.eq(self.dut.w_rd.en),
                     self.dut.w_rd.data.eq(self.weights.w_rd_data)]
        return m


def bits(rng, n):
    return int.from_bytes(rng.bytes(-(-n // 8)), "little") & ((1 << n) - 1)


async def load_weights(ctx, top, w_words):
    for addr, word in enumerate(w_words):
        ctx.set(top.weights.host.valid, 1)
        ctx.set(top.weights.host.payload, {"addr": addr, "h": 0, "w": word})
        await ctx.tick()
    ctx.set(top.weights.host.valid, 0)
    await ctx.tick().repeat(4)


class Layer:
    """One random layer run: its geometry, A before and after the load, and the words
    that must leave, in order: ``(group, k, w, W word, count, last)``."""

    def __init__(self, rng, *, top, w_words, words, kout, bs):
        P, G = top.dut.lanes, top.dut.patterns
        self.top, self.words, self.kout, self.bs = top, words, kout, bs
        self.w_base = int(rng.integers(0, top.w_depth - kout * words + 1))
        self.a_base = int(rng.integers(0, A_DEPTH - bs * A_WORDS + 1))
        self.last = int(rng.integers(1, P + 1))
        self.fresh = {mu: [bits(rng, P) for _ in range(words)] for mu in range(bs)}
        self.want = [(g, k, w, w_words[self.w_base + k * words + w],
                      self.last if w == words - 1 else P, int(w == words - 1))
                     for g in range(-(-bs // G)) for k in range(kout) for w in range(words)]
        self.reads = Counter()
        self.loaded = 0

    def ends_output_word(self, i):
        """Word ``i`` is the last of a neuron that ends an output word of the layer."""
        _, k, _, _, _, last = self.want[i]
        return last and (k % self.top.dut.lanes == self.top.dut.lanes - 1
                         or k == self.kout - 1)

    async def start(self, ctx, rng, *, preload=False):
        """A before the load: stale words everywhere; each pattern's words land as it is
        loaded (all of them before the start with ``preload``)."""
        dut, a_mem = self.top.dut, self.top.a_mem
        for addr in range(A_DEPTH):
            ctx.set(a_mem.data[addr], bits(rng, dut.lanes))
        ctx.set(dut.layer, {"base": self.w_base, "words_m1": self.words - 1,
                            "kout_m1": self.kout - 1, "last": self.last})
        ctx.set(dut.bs, self.bs)
        ctx.set(dut.bs_m1, self.bs - 1)
        ctx.set(dut.loaded, 0)
        if preload:
            while self.loaded < self.bs:
                self.load(ctx)
        ctx.set(dut.start, 1)
        ctx.set(dut.w_base, self.w_base)
        ctx.set(dut.a_base, self.a_base)
        ctx.set(dut.count, self.bs)
        # The previous layer is over or flushed: its fill reads nothing more.
        assert not ctx.get(dut.a_rd.en)
        await ctx.tick()
        ctx.set(dut.start, 0)

    def load(self, ctx):
        """The next pattern's words land in A and ``loaded`` covers it."""
        mu = self.loaded
        for w in range(self.words):
            ctx.set(self.top.a_mem.data[self.a_base + mu * A_WORDS + w], self.fresh[mu][w])
        self.loaded += 1
        ctx.set(self.top.dut.loaded, self.loaded)

    def sample_read(self, ctx, where):
        """A is read only at the words of the layer's loaded patterns."""
        dut = self.top.dut
        if ctx.get(dut.a_rd.en):
            addr = ctx.get(dut.a_rd.addr)
            mu, w = divmod(addr - self.a_base, A_WORDS)
            assert addr >= self.a_base and w < self.words and mu < self.loaded, \
                f"A read at {addr} (pattern {mu}, word {w}, loaded {self.loaded}), {where}"
            self.reads[mu, w] += 1

    def check_reads(self, where):
        """Each pattern's words were read exactly once: a group's words once per layer."""
        assert sum(self.reads.values()) == self.bs * self.words, where
        assert set(self.reads) == {(mu, w) for mu in range(self.bs)
                                   for w in range(self.words)}, where
        assert set(self.reads.values()) == {1}, where

    def check_word(self, ctx, i, where):
        """Word ``i`` leaves: W, count, last and the group's patterns' A words."""
        P, G = self.top.dut.lanes, self.top.dut.patterns
        g, k, w, w_word, count, is_last = self.want[i]
        p = ctx.get(self.top.dut.o.payload)
        assert (p.w, p.count, p.last) == (w_word, count, is_last), (where, i, k, w)
        for slot in range(G):
            mu = g * G + slot
            if mu < self.bs:
                assert mu < self.loaded, f"pattern {mu} read before its load, {where}"
                assert (p.a >> (slot * P)) & ((1 << P) - 1) == self.fresh[mu][w], \
                    (where, i, k, w, slot)

    async def finish(self, ctx, where):
        """The layer is over: nothing more comes, A is not read, and the source is idle."""
        dut = self.top.dut
        for _ in range(4):
            assert not ctx.get(dut.o.valid) and not ctx.get(dut.a_rd.en), where
            await ctx.tick()
        assert not ctx.get(dut.active) and ctx.get(dut.empty), where
        self.check_reads(where)


@pytest.mark.parametrize("lanes, patterns, end_gap", [(32, 1, 1), (32, 3, 1), (64, 4, 1),
                                                     (32, 3, 3)])
@pytest.mark.parametrize("stall", [0.0, 0.5])
def test_against_layer_walk(rng, lanes, patterns, end_gap, stall):
    """``stall``: the share of cycles with ``o.ready`` low; half as many hold the
    generator."""
    top = Harness(lanes=lanes, patterns=patterns, end_gap=end_gap)
    dut = top.dut
    w_words = [bits(rng, lanes) for _ in range(W_DEPTH)]
    checked = {"words": 0, "flushes": 0, "waits": 0, "layers": 0}

    async def bench(ctx):
        await load_weights(ctx, top, w_words)
        for run in range(16):
            layer = Layer(rng, top=top, w_words=w_words,
                          words=int(rng.integers(1, A_WORDS + 1)),
                          kout=int(rng.integers(1, MAX_WIDTH + 1)),
                          bs=int(rng.integers(1, MAX_BATCH + 1)))
            bs, want = layer.bs, layer.want
            # Every fourth layer is flushed before its last word can have left.
            flush_at = int(rng.integers(1, len(want) + 1)) if run % 4 == 3 else None
            where = f"run {run} (kout {layer.kout}, words {layer.words}, bs {bs})"
            await layer.start(ctx, rng)
            got, t = 0, 0
            limit = 50 + 4 * len(want) + 8 * bs * layer.words
            while got < len(want):
                assert t < limit, f"only {got} of {len(want)} words, {where}"
                if t == flush_at:
                    ctx.set(dut.flush, 1)
                    layer.sample_read(ctx, f"{where}, flush")
                    await ctx.tick()
                    ctx.set(dut.flush, 0)
                    assert not ctx.get(dut.o.valid) and not ctx.get(dut.active)
                    assert not ctx.get(dut.a_rd.en), f"A read after the flush, {where}"
                    checked["flushes"] += 1
                    break
                if layer.loaded < bs and rng.random() < 0.4:
                    layer.load(ctx)
                ready = bool(rng.random() >= stall)
                ctx.set(dut.o.ready, ready)
                ctx.set(dut.hold, bool(rng.random() < stall / 2))
                layer.sample_read(ctx, f"{where}, cycle {t}")
                if ctx.get(dut.o.valid) and ready:
                    layer.check_word(ctx, got, f"{where}, cycle {t}")
                    got += 1
                    checked["words"] += 1
                elif layer.loaded < min(bs, patterns) and not ctx.get(dut.o.valid):
                    checked["waits"] += 1
                await ctx.tick()
                t += 1
            else:
                await layer.finish(ctx, where)
                checked["layers"] += 1

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert checked["words"] > 50 and checked["flushes"] == 4 and checked["waits"] > 0
    assert checked["layers"] == 12


@pytest.mark.parametrize("lanes, patterns, end_gap", [
    (32, 1, 1), (32, 4, 1), (32, 3, 3), (64, 4, 4), (32, 1, 3), (32, 3, 7), (64, 4, 7),
])
def test_end_gap(rng, lanes, patterns, end_gap):
    """``o.ready`` always high, no ``hold``: two words that end an output word (neuron
    ``k % lanes == lanes - 1`` or the layer's last) leave at least ``end_gap`` cycles
    apart, and no later than that or than the word before them allows. Within a group
    (its words are in the cache) words come back to back but for the gap; across groups
    too once the minibatch is loaded and a group's generation outlasts the next group's
    fill (``kout > patterns``)."""
    max_width = lanes + 4
    w_depth = 1 << bits_for(max_width * A_WORDS - 1)
    top = Harness(lanes=lanes, patterns=patterns, end_gap=end_gap, max_width=max_width,
                  w_depth=w_depth)
    dut = top.dut
    w_words = [bits(rng, lanes) for _ in range(w_depth)]
    checked = {"words": 0, "bound": 0, "tight_groups": 0, "crossings": 0}

    async def bench(ctx):
        await load_weights(ctx, top, w_words)
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.hold, 0)
        for run in range(12):
            # Small layers, whose groups' ends come close, and layers across the end of
            # an output word (with kout = lanes + 1, neurons lanes - 1 and lanes both end
            # one).
            if run % 4 == 0:
                kout, words = int(rng.integers(1, 3)), 1
            elif run % 4 == 1:
                kout, words = int(rng.integers(1, 5)), int(rng.integers(1, A_WORDS + 1))
            elif run % 4 == 2:
                kout = lanes + 1 if run % 8 == 2 else \
                    int(rng.integers(lanes + 1, max_width + 1))
                words = int(rng.integers(1, 3))
            else:
                kout = int(rng.integers(lanes - 2, lanes + 1))
                words = int(rng.integers(1, 3))
            bs = int(rng.integers(1, MAX_BATCH + 1)) if run % 4 >= 2 else \
                int(rng.integers(patterns, MAX_BATCH + 1))
            layer = Layer(rng, top=top, w_words=w_words, words=words, kout=kout, bs=bs)
            preload = run // 4 % 2 == 0
            where = f"run {run} (kout {kout}, words {words}, bs {bs}, preload {preload})"
            await layer.start(ctx, rng, preload=preload)
            cycles, t = [], 0
            limit = 50 + (end_gap + 1) * len(layer.want) + 8 * bs * words
            while len(cycles) < len(layer.want):
                assert t < limit, f"only {len(cycles)} of {len(layer.want)} words, {where}"
                if layer.loaded < bs and rng.random() < 0.4:
                    layer.load(ctx)
                layer.sample_read(ctx, f"{where}, cycle {t}")
                if ctx.get(dut.o.valid):
                    layer.check_word(ctx, len(cycles), f"{where}, cycle {t}")
                    cycles.append(t)
                await ctx.tick()
                t += 1
            await layer.finish(ctx, where)
            checked["words"] += len(cycles)

            tight_groups = preload and kout > patterns
            checked["tight_groups"] += tight_groups
            last_end = None
            for i, c in enumerate(cycles):
                end = layer.ends_output_word(i)
                if i:
                    earliest, bound = cycles[i - 1] + 1, False
                    if end and last_end is not None:
                        assert c - last_end >= end_gap, \
                            f"output words end at {last_end} and {c}, {where}, word {i}"
                        bound = last_end + end_gap > earliest
                        earliest = max(earliest, last_end + end_gap)
                    if layer.want[i][0] != layer.want[i - 1][0]:
                        # A new group: it may wait for its fill.
                        checked["crossings"] += 1
                        if not tight_groups:
                            assert c >= earliest, (where, i)
                            earliest, bound = c, False
                    assert c == earliest, \
                        f"word {i} at cycle {c}, expected {earliest}, {where}"
                    checked["bound"] += bound
                if end:
                    last_end = c

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert checked["words"] > 100 and checked["tight_groups"] > 0 and checked["crossings"] > 0
    assert (checked["bound"] > 0) == (end_gap > 1)


def test_gapless_without_stalls():
    """Loaded ahead and never stalled, a layer takes one cycle per word after the first
    group's fill (its ``patterns * words`` reads of A and the write into the cache) and
    the pipeline: later groups are filled while the one before them is generated."""
    top = Harness(lanes=32, patterns=2)
    dut = top.dut
    cycles, reads = [], []

    async def bench(ctx):
        ctx.set(dut.layer, {"base": 0, "words_m1": 1, "kout_m1": 4, "last": 7})
        ctx.set(dut.bs, 5)
        ctx.set(dut.bs_m1, 4)
        ctx.set(dut.loaded, 5)
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.start, 1)
        ctx.set(dut.a_base, 0)
        ctx.set(dut.count, 5)
        await ctx.tick()
        ctx.set(dut.start, 0)
        for t in range(200):
            if ctx.get(dut.o.valid):
                cycles.append(t)
            if ctx.get(dut.a_rd.en):
                reads.append(ctx.get(dut.a_rd.addr))
            await ctx.tick()

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    # 3 groups x 5 neurons x 2 words, back to back, after 2 x 2 reads, the write and the
    # pipeline's two stages.
    assert cycles == list(range(cycles[0], cycles[0] + 30)) and cycles[0] == 2 * 2 + 1 + 2
    # 5 patterns x 2 words of A, each read once.
    assert sorted(reads) == [mu * A_WORDS + w for mu in range(5) for w in range(2)]


@pytest.mark.parametrize("kwargs, error, text", [
    ({"lanes": 2048}, ValueError, "lanes"),
    ({"patterns": 0}, ValueError, "patterns"),
    ({"a_depth": "8"}, TypeError, "a_depth"),
    ({"end_gap": 0}, ValueError, "end_gap"),
    ({"end_gap": 65}, ValueError, "end_gap"),
    ({"end_gap": "x"}, TypeError, "end_gap"),
])
def test_bad_parameters(kwargs, error, text):
    args = {"lanes": 64, "patterns": 2, "max_batch": 8, "max_width": 5, "a_words": 2,
            "addr_bits": 8, "a_depth": 40, **kwargs}
    with pytest.raises(error, match=text):
        ForwardSource(**args)
