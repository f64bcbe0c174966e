# amaranth: UnusedElaboratable=no
"""ForwardSource with the core's weight store and an A memory: random layers and
minibatches, the load racing the forward pass, backpressure and flushes; every word that
leaves compared with the W word and the A row its position in the layer names."""

import pytest
from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from xnorlearn.hw.fwd_source import ForwardSource
from xnorlearn.hw.weights import WeightStore

W_DEPTH, A_DEPTH, MAX_BATCH, MAX_WIDTH, A_WORDS = 64, 48, 10, 6, 3


class Harness(wiring.Component):
    def __init__(self, *, lanes, patterns):
        self.dut = ForwardSource(lanes=lanes, patterns=patterns, max_batch=MAX_BATCH,
                                 max_width=MAX_WIDTH, a_words=A_WORDS, addr_bits=6,
                                 a_depth=A_DEPTH)
        self.weights = WeightStore(lanes=lanes, h_bits=2, depth=W_DEPTH)
        self.a_mem = Memory(shape=patterns * lanes, depth=A_DEPTH, init=[])
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


@pytest.mark.parametrize("lanes, patterns", [(32, 1), (32, 3), (64, 4)])
@pytest.mark.parametrize("stall", [0.0, 0.5])
def test_against_layer_walk(rng, lanes, patterns, stall):
    """``stall``: the share of cycles with ``o.ready`` low; half as many hold the
    generator."""
    top = Harness(lanes=lanes, patterns=patterns)
    dut, P, G = top.dut, lanes, patterns
    w_words = [bits(rng, P) for _ in range(W_DEPTH)]
    checked = {"words": 0, "flushes": 0, "waits": 0}

    async def bench(ctx):
        for addr, word in enumerate(w_words):
            ctx.set(top.weights.host.valid, 1)
            ctx.set(top.weights.host.payload, {"addr": addr, "h": 0, "w": word})
            await ctx.tick()
        ctx.set(top.weights.host.valid, 0)
        await ctx.tick().repeat(4)
        for run in range(16):
            words = int(rng.integers(1, A_WORDS + 1))
            kout = int(rng.integers(1, MAX_WIDTH + 1))
            bs = int(rng.integers(1, MAX_BATCH + 1))
            groups = -(-bs // G)
            w_base = int(rng.integers(0, W_DEPTH - kout * words + 1))
            a_base = int(rng.integers(0, A_DEPTH - groups * A_WORDS + 1))
            last = int(rng.integers(1, P + 1))
            # A before the load: stale rows; each pattern's words land as it is loaded.
            a_rows = {a_base + g * A_WORDS + w: bits(rng, G * P)
                      for g in range(groups) for w in range(A_WORDS)}
            for addr, v in a_rows.items():
                ctx.set(top.a_mem.data[addr], v)
            fresh = {mu: [bits(rng, P) for _ in range(words)] for mu in range(bs)}
            want = []
            for g in range(groups):
                for k in range(kout):
                    for w in range(words):
                        want.append((g, w_words[w_base + k * words + w],
                                     last if w == words - 1 else P, int(w == words - 1), w))
            # Every fourth layer is flushed before its last word can have left.
            flush_at = int(rng.integers(1, len(want) + 1)) if run % 4 == 3 else None
            ctx.set(dut.layer, {"base": w_base, "words_m1": words - 1, "kout_m1": kout - 1,
                                "last": last})
            ctx.set(dut.bs, bs)
            ctx.set(dut.bs_m1, bs - 1)
            ctx.set(dut.loaded, 0)
            ctx.set(dut.start, 1)
            ctx.set(dut.w_base, w_base)
            ctx.set(dut.a_base, a_base)
            ctx.set(dut.count, bs)
            await ctx.tick()
            ctx.set(dut.start, 0)
            loaded, got, t = 0, 0, 0
            limit = 50 + 4 * len(want) + 8 * bs
            while got < len(want):
                assert t < limit, f"only {got} of {len(want)} words"
                if t == flush_at:
                    ctx.set(dut.flush, 1)
                    await ctx.tick()
                    ctx.set(dut.flush, 0)
                    assert not ctx.get(dut.o.valid) and not ctx.get(dut.active)
                    checked["flushes"] += 1
                    break
                if loaded < bs and rng.random() < 0.4:
                    for w in range(words):
                        addr = a_base + loaded // G * A_WORDS + w
                        slot = loaded % G
                        row = ctx.get(top.a_mem.data[addr])
                        row &= ~(((1 << P) - 1) << (slot * P))
                        ctx.set(top.a_mem.data[addr], row | fresh[loaded][w] << (slot * P))
                    loaded += 1
                    ctx.set(dut.loaded, loaded)
                ready = bool(rng.random() >= stall)
                ctx.set(dut.o.ready, ready)
                ctx.set(dut.hold, bool(rng.random() < stall / 2))
                if ctx.get(dut.o.valid) and ready:
                    g, w_word, count, is_last, w = want[got]
                    p = ctx.get(dut.o.payload)
                    assert (p.w, p.count, p.last) == (w_word, count, is_last), (run, got)
                    for slot in range(G):
                        mu = g * G + slot
                        if mu < bs:
                            assert mu < loaded, f"pattern {mu} read before its load"
                            assert (p.a >> (slot * P)) & ((1 << P) - 1) == fresh[mu][w], \
                                (run, got, slot)
                    got += 1
                    checked["words"] += 1
                elif loaded < min(bs, G) and not ctx.get(dut.o.valid):
                    checked["waits"] += 1
                await ctx.tick()
                t += 1
            else:
                # The layer is over: nothing more comes, and the source is idle.
                for _ in range(4):
                    assert not ctx.get(dut.o.valid)
                    await ctx.tick()
                assert not ctx.get(dut.active) and ctx.get(dut.empty)

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert checked["words"] > 50 and checked["flushes"] == 4 and checked["waits"] > 0


def test_gapless_without_stalls():
    """Loaded ahead and never stalled, a layer takes one cycle per word plus the pipeline."""
    top = Harness(lanes=32, patterns=2)
    dut = top.dut
    cycles = []

    async def bench(ctx):
        ctx.set(dut.layer, {"base": 0, "words_m1": 1, "kout_m1": 4, "last": 7})
        ctx.set(dut.bs, 5)
        ctx.set(dut.bs_m1, 4)
        ctx.set(dut.loaded, 5)
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.start, 1)
        ctx.set(dut.count, 5)
        await ctx.tick()
        ctx.set(dut.start, 0)
        first = None
        for t in range(200):
            if ctx.get(dut.o.valid):
                first = t if first is None else first
                cycles.append(t)
            await ctx.tick()

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    # 3 groups x 5 neurons x 2 words, back to back, two cycles after the start.
    assert cycles == list(range(cycles[0], cycles[0] + 30)) and cycles[0] == 2


@pytest.mark.parametrize("kwargs, error, text", [
    ({"lanes": 2048}, ValueError, "lanes"),
    ({"patterns": 0}, ValueError, "patterns"),
    ({"a_depth": "8"}, TypeError, "a_depth"),
])
def test_bad_parameters(kwargs, error, text):
    args = {"lanes": 64, "patterns": 2, "max_batch": 8, "max_width": 5, "a_words": 2,
            "addr_bits": 8, "a_depth": 40, **kwargs}
    with pytest.raises(error, match=text):
        ForwardSource(**args)
