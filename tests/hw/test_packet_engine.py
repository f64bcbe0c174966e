# amaranth: UnusedElaboratable=no
"""PacketEngine with the core's layer configuration, weight store and real memories,
driven with the host driver's packets (``xnorlearn.sw.protocol``) under idle and
backpressure stalls: every WRITE_H / WRITE_P / WRITE_T compared word for word with the
memories (padding lanes and the W sign bits included) and read back; TRAIN and INFER
loads compared with the labels and A memories, their layer sequence with the forward
pass's and updates' handshakes, and their responses; and refused packets of every code,
with the rows or words a refused WRITE must have written, the flush pulse, and recovery
after ``clear_error``."""

import numpy as np
import pytest
from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from xnorlearn.contract import ErrorCode, Opcode, Phase, header_word
from xnorlearn.hw.layer_config import LayerConfig
from xnorlearn.hw.packet_engine import PacketEngine
from xnorlearn.hw.weights import WeightStore
from xnorlearn.sw import protocol

ML, MW, MF, MB, C, MG, H_BITS = 3, 12, 100, 7, 10, 12, 8
LABEL_BITS = 4


class Harness(wiring.Component):
    """The engine wired as in the core; the forward pass and the updates are the
    testbench's."""

    def __init__(self, *, lanes, patterns):
        G = patterns
        self.lanes, self.patterns = lanes, G
        self.a_words = max(-(-MF // lanes), -(-MW // lanes))
        self.depth = self.a_words * MW * ML
        self.region = MB * self.a_words          # A words of a layer region
        self.a_depth = (ML + 1) // 2 * self.region
        self.cfg = LayerConfig(lanes=lanes, max_layers=ML, width_bits=7,
                               margin_bits=(2 * MW).bit_length(), max_width=MW,
                               max_fan_in=MF, max_groups=MG, weight_words=self.depth,
                               draw_lanes=16)
        self.weights = WeightStore(lanes=lanes, h_bits=H_BITS, depth=self.depth)
        self.dut = PacketEngine(lanes=lanes, h_bits=H_BITS, patterns=G, max_layers=ML,
                                max_width=MW, max_fan_in=MF, max_batch=MB, classes=C,
                                width_bits=7, a_words=self.a_words,
                                a_depth=self.a_depth, weight_words=self.depth,
                                h_read_latency=self.weights.h_read_latency)
        self.preds = [int(v) for v in np.random.default_rng(G).integers(
            0, 1 << (G * LABEL_BITS), -(-MB // G))]
        self.mems = {
            "labels": Memory(shape=LABEL_BITS, depth=MB, init=[]),
            "a": Memory(shape=lanes, depth=self.a_depth, init=[]),
            "pred": Memory(shape=G * LABEL_BITS, depth=-(-MB // G), init=self.preds),
            "p": Memory(shape=C, depth=ML * MW, init=[]),
            "t": Memory(shape=17, depth=ML * MW, init=[]),
        }
        if G > 1:
            self.mems["label_groups"] = Memory(shape=G * LABEL_BITS, depth=-(-MB // G),
                                               init=[])
        # The testbench's own reads of H and W.
        self.rd_sel = Signal()
        self.rd_addr = Signal(range(self.depth))
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        dut, cfg, weights, mems = self.dut, self.cfg, self.weights, self.mems
        m.submodules.dut, m.submodules.cfg, m.submodules.weights = dut, cfg, weights
        for name, mem in mems.items():
            m.submodules[name] = mem
        m.d.comb += [
            cfg.fwd_layer.eq(dut.index_next),
            dut.cfg_ok.eq(cfg.ok), dut.layers.eq(cfg.layers), dut.fan_in.eq(cfg.width[0]),
            dut.layer.base.eq(cfg.fwd.base), dut.layer.kin.eq(cfg.fwd.kin),
            dut.layer.kout_m1.eq(cfg.fwd.kout_m1), dut.layer.hw_m1.eq(cfg.fwd.hw_m1),
            dut.layer.is_last.eq(cfg.fwd.is_last),
            weights.h_rd_addr.eq(Mux(self.rd_sel, self.rd_addr, dut.h_rd_addr)),
            dut.h_rd_data.eq(weights.h_rd_data),
            weights.w_rd_addr.eq(self.rd_addr), weights.w_rd_en.eq(1),
        ]
        wiring.connect(m, dut.host, weights.host)
        wiring.connect(m, dut.label_wr, mems["labels"].write_port())
        if self.patterns > 1:
            wiring.connect(m, dut.label_group_wr,
                           mems["label_groups"].write_port(granularity=LABEL_BITS))
        a_wr = mems["a"].write_port()
        m.d.comb += [a_wr.addr.eq(dut.a_load.addr), a_wr.data.eq(dut.a_load.data),
                     a_wr.en.eq(Mux(dut.loading, dut.a_load.en, 0))]
        wiring.connect(m, dut.pred_rd, mems["pred"].read_port())
        wiring.connect(m, dut.p_wr, mems["p"].write_port())
        wiring.connect(m, dut.t_wr, mems["t"].write_port())
        wiring.connect(m, dut.t_rd, mems["t"].read_port())
        p_rd = mems["p"].read_port()
        m.d.comb += [p_rd.addr.eq(Mux(dut.p_rd_host, dut.p_rd_addr, 0)),
                     dut.p_rd_data.eq(p_rd.data)]
        return m


class Fault(AssertionError):
    pass


class TB:
    """Host side (packets with idle cycles, responses with backpressure) and a stand-in
    for the forward pass and the updates, with a log of what the engine asked of them."""

    def __init__(self, h, rng, *, idle, stall):
        self.h, self.dut, self.rng = h, h.dut, rng
        self.idle, self.stall = idle, stall
        self.starts = []        # (cycle, layer, count, updates done)
        self.finishes = 0
        self.flushes = 0
        self.errors_planned = 0
        self.cycle = 0

    async def send(self, ctx, words, last_at=None):
        s = self.dut.s_axis
        last_at = len(words) - 1 if last_at is None else last_at
        for i, w in enumerate(words):
            while self.rng.random() < self.idle:
                ctx.set(s.valid, 0)
                await ctx.tick()
            ctx.set(s.valid, 1)
            ctx.set(s.payload.data, int(w))
            ctx.set(s.payload.last, i == last_at)
            for _ in range(2000):
                ready = ctx.get(s.ready)
                await ctx.tick()
                if ready:
                    break
            else:
                raise Fault(f"word {i} of the packet not taken in 2000 cycles")
        ctx.set(s.valid, 0)

    async def receive(self, ctx):
        o, words = self.dut.m_axis, []
        for _ in range(20000):
            ready = self.rng.random() >= self.stall
            ctx.set(o.ready, ready)
            valid, data, last = ctx.get(o.valid), ctx.get(o.payload.data), ctx.get(o.payload.last)
            await ctx.tick()
            if ready and valid:
                words.append(data)
                if last:
                    ctx.set(o.ready, 0)
                    return words
        raise Fault(f"no response's last word in 20000 cycles (got {len(words)} words)")

    async def idle_until(self, ctx, cond, what, limit=5000):
        for _ in range(limit):
            if cond():
                return
            await ctx.tick()
        raise Fault(f"timed out waiting for {what}")

    async def forward_and_updates(self, ctx):
        """Forward pass: a started layer completes some cycles after its start (layer 0
        only after its last pattern is loaded) and stays complete until the next start;
        the last layer adds planned errors on the way. Updates: layer ``u`` is done some
        cycles after ``fwd_done > u`` (``TRAIN`` only). After each ``finish``, ``sweeping``
        for a random number of cycles, during which no ``H`` word may be written or read
        and the CP updates wait."""
        dut, rng = self.dut, self.rng
        running = None          # [layer, count, cycles left, errors left]
        complete = False
        upd, upd_wait = 0, None
        sweep_left = 0
        while True:
            sweeping = sweep_left > 0
            sweep_left = max(sweep_left - 1, 0)
            ctx.set(dut.sweeping, sweeping)
            # This cycle's inputs, from what the engine did before.
            add = 0
            if running is not None and not complete:
                layer, count, left, errors = running
                add = min(errors, int(rng.integers(0, self.h.patterns + 1)))
                running[3] -= add
                if left:
                    running[2] -= 1
                elif (layer > 0 or ctx.get(dut.loaded) == count) and not running[3]:
                    complete = True
            ctx.set(dut.errors_add, add)
            ctx.set(dut.fwd_busy, running is not None and not complete)
            ctx.set(dut.fwd_complete, complete)
            if ctx.get(dut.op) == Opcode.TRAIN and upd < ctx.get(dut.fwd_done) and not sweeping:
                if upd_wait is None:
                    upd_wait = int(rng.integers(0, 60))
                elif upd_wait == 0:
                    upd, upd_wait = upd + 1, None
                else:
                    upd_wait -= 1
            ctx.set(dut.upd_index, upd)
            ctx.set(dut.upd_phase, Phase.REINFORCE if upd_wait and upd_wait < 20
                    else Phase.UPDATE)
            # What the engine does in this cycle.
            if ctx.get(dut.flush):
                self.flushes += 1
                running, complete = None, False
            if ctx.get(dut.upd_restart):
                upd, upd_wait = 0, None
            if ctx.get(dut.fwd_start):
                layer, count = ctx.get(dut.fwd_layer), ctx.get(dut.fwd_count)
                self.starts.append((self.cycle, layer, count, upd))
                errors = 0
                if layer == ctx.get(self.h.cfg.layers) - 1:
                    errors = int(rng.integers(0, count + 1))
                    self.errors_planned = errors
                running, complete = [layer, count, int(rng.integers(1, 30)), errors], False
            if ctx.get(dut.finish):
                self.finishes += 1
                assert upd == ctx.get(self.h.cfg.layers), "finished before the updates"
                sweep_left = int(rng.integers(0, 120))
            if sweeping:
                assert not ctx.get(dut.host.valid), "an H word written during the sweeps"
            await ctx.tick()
            self.cycle += 1

    async def read_h_word(self, ctx, addr):
        ctx.set(self.h.rd_sel, 1)
        ctx.set(self.h.rd_addr, addr)
        await ctx.tick().repeat(self.h.weights.h_read_latency)
        word = ctx.get(self.h.weights.h_rd_data)
        ctx.set(self.h.rd_sel, 0)
        return word

    async def read_w_word(self, ctx, addr):
        ctx.set(self.h.rd_addr, addr)
        await ctx.tick().repeat(self.h.weights.w_read_latency)
        return ctx.get(self.h.weights.w_rd_data)


def h_memory_words(h, lanes):
    """The ``H`` and ``W`` memory words of a layer's hidden weights ``(K, fan_in)``:
    ``ceil(fan_in / lanes)`` words per neuron, lanes past the fan-in zero."""
    k, fan_in = h.shape
    words = -(-fan_in // lanes)
    padded = np.zeros((k, words * lanes), dtype=np.int64)
    padded[:, :fan_in] = h
    hw, ww = [], []
    for row in padded.reshape(k * words, lanes):
        hw.append(sum((int(v) & 0xFF) << (H_BITS * i) for i, v in enumerate(row)))
        ww.append(sum(1 << i for i, v in enumerate(row) if v > 0))
    return hw, ww


def random_config(rng, fan_in=None):
    layers = int(rng.integers(1, ML + 1))
    width = [fan_in or int(rng.choice([1, 4, 31, 32, 33, MF, int(rng.integers(1, MF + 1))]))]
    width += [int(rng.integers(1, MW + 1)) for _ in range(layers)]
    width += [1] * (ML + 1 - len(width))
    gamma = [max(1, int(rng.integers(1, w + 1))) for w in width[1:]]
    return layers, width, gamma


def odd_h(rng, k, fan_in):
    return rng.choice(np.arange(-127, 128, 2), size=(k, fan_in))


def write_h_words(rng, layer, h):
    """A WRITE_H packet, with random padding bytes past the fan-in half of the time (the
    engine writes zero lanes there whatever they hold)."""
    words = protocol.write_h_packet(layer, h).astype(np.uint32)
    k, fan_in = h.shape
    per = -(-fan_in // 4)
    if fan_in % 4 and rng.random() < 0.5:
        junk = rng.integers(0, 1 << 32, k, dtype=np.uint64).astype(np.uint32)
        keep = np.uint32((1 << (8 * (fan_in % 4))) - 1)
        idx = 1 + per * np.arange(k) + per - 1
        words[idx] = (words[idx] & keep) | (junk & ~keep)
    return words


@pytest.mark.parametrize("lanes,patterns,idle,stall", [
    (32, 1, 0.0, 0.0), (32, 3, 0.3, 0.4), (64, 1, 0.3, 0.4), (64, 4, 0.0, 0.0),
    (64, 2, 0.5, 0.6), (96, 2, 0.3, 0.4),
])
def test_packets_against_the_protocol(lanes, patterns, idle, stall, rng):
    h = Harness(lanes=lanes, patterns=patterns)
    dut, cfg, mems = h.dut, h.cfg, h.mems
    tb = TB(h, rng, idle=idle, stall=stall)
    counts = {"configs": 0, "train": 0, "infer": 0, "refused": set(), "writes": 0}

    async def configure(ctx, layers, width, gamma):
        ctx.set(cfg.layers, layers)
        for l in range(ML + 1):
            ctx.set(cfg.width[l], width[l])
        for l in range(ML):
            ctx.set(cfg.gamma[l], gamma[l] if l < len(gamma) else 1)
        await ctx.tick().repeat(cfg.latency + 2)

    async def refused(ctx, words, code, last_at=None):
        before = tb.flushes
        await tb.send(ctx, words, last_at)
        await tb.idle_until(ctx, lambda: ctx.get(dut.error), "the error flag")
        assert ErrorCode(ctx.get(dut.error_code)) == code
        await ctx.tick().repeat(3)
        assert tb.flushes == before + 1, "a refusal flushes the forward pass once"
        assert ctx.get(dut.phase) == Phase.ERROR and not ctx.get(dut.busy)
        ctx.set(dut.clear_error, 1)
        await ctx.tick()
        ctx.set(dut.clear_error, 0)
        await ctx.tick()
        assert not ctx.get(dut.error) and ctx.get(dut.phase) == Phase.IDLE
        counts["refused"].add(code)

    async def check_h(ctx, layer, model, base):
        hw, ww = h_memory_words(model, lanes)
        for i, (eh, ew) in enumerate(zip(hw, ww)):
            assert await tb.read_h_word(ctx, base + i) == eh, f"H word {i} of layer {layer}"
            assert await tb.read_w_word(ctx, base + i) == ew, f"W word {i} of layer {layer}"

    # What A holds before each load: random words of its own (fixed) generator, which no
    # load writes by chance.
    sentinel_rng = np.random.default_rng(12345)
    sentinel = [int.from_bytes(sentinel_rng.bytes(lanes // 8), "little")
                for _ in range(h.a_depth)]

    async def run_batch(ctx, opcode, layers, width):
        # A filled with the sentinel, so that the load's stray writes show.
        for addr in range(h.a_depth):
            ctx.set(mems["a"].data[addr], sentinel[addr])
        bs = int(rng.integers(1, MB + 1))
        a0 = rng.choice([-1, 1], size=(bs, width[0]))
        labels = rng.integers(0, C, bs)
        make = protocol.train_packet if opcode == Opcode.TRAIN else protocol.infer_packet
        start = len(tb.starts)
        await tb.send(ctx, make(a0, labels, classes=C))
        words = await tb.receive(ctx)
        errors = tb.errors_planned
        if opcode == Opcode.INFER:
            G = patterns
            preds = [(h.preds[mu // G] >> (LABEL_BITS * (mu % G))) & 0xF for mu in range(bs)]
            assert words[:-1] == preds
        else:
            assert len(words) == 1
        assert words[-1] == ((0x80 | opcode) << 24) | errors
        # The layer sequence, and the updates each later layer waited for.
        starts = tb.starts[start:]
        assert [(layer, count) for _, layer, count, _ in starts] == \
            [(l, bs) for l in range(layers)]
        if opcode == Opcode.TRAIN:
            for _, layer, _, done in starts:
                assert done + 1 >= layer, f"layer {layer} started with {done} updates done"
        # What the load wrote: labels, and word w of pattern mu at mu * a_words + w of A
        # (region 0); every other word of A keeps its sentinel.
        bits = (a0 > 0).astype(np.int64)
        words_a = -(-width[0] // lanes)
        G = patterns
        expect_a = {}
        for mu in range(bs):
            assert ctx.get(mems["labels"].data[mu]) == labels[mu]
            grp, slot = divmod(mu, G)
            if G > 1:
                row = ctx.get(mems["label_groups"].data[grp])
                assert (row >> (LABEL_BITS * slot)) & 0xF == labels[mu]
            for w in range(words_a):
                chunk = bits[mu, w * lanes:(w + 1) * lanes]
                expect_a[mu * h.a_words + w] = sum(int(b) << i for i, b in enumerate(chunk))
        for addr in range(h.a_depth):
            got = ctx.get(mems["a"].data[addr])
            if addr in expect_a:
                mu, w = divmod(addr, h.a_words)
                assert got == expect_a[addr], \
                    f"A word {w} of pattern {mu}: {got:#x} != {expect_a[addr]:#x}"
            else:
                assert got == sentinel[addr], f"A word {addr} written, not in the load"

    async def host(ctx):
        for n in range(3):
            # The first configuration takes the most inputs: several A words per pattern.
            layers, width, gamma = random_config(rng, MF if n == 0 else None)
            await configure(ctx, layers, width, gamma)
            counts["configs"] += 1
            bases = [ctx.get(cfg.bases[l]) for l in range(ML)]
            H, P, T = {}, {}, {}
            # Every layer's H, P and T written (in a random order) and checked in memory.
            items = [(kind, layer) for kind in "hpt" for layer in range(layers)]
            for i in rng.permutation(len(items)):
                kind, layer = items[i]
                k, fan_in = width[layer + 1], width[layer]
                if kind == "h":
                    H[layer] = odd_h(rng, k, fan_in)
                    await tb.send(ctx, write_h_words(rng, layer, H[layer]))
                    await ctx.tick().repeat(3)
                    await check_h(ctx, layer, H[layer], bases[layer])
                elif kind == "p":
                    P[layer] = rng.choice([-1, 1], size=(k, C))
                    await tb.send(ctx, protocol.write_p_packet(layer, P[layer]))
                    for n, w in enumerate(protocol.pack_p(P[layer])):
                        assert ctx.get(mems["p"].data[layer * MW + n]) == w
                else:
                    T[layer] = (rng.integers(-32768, 32768, k), rng.integers(0, 2, k))
                    await tb.send(ctx, protocol.write_t_packet(layer, *T[layer]))
                    for n, w in enumerate(protocol.pack_t(*T[layer])):
                        assert ctx.get(mems["t"].data[layer * MW + n]) == w
                counts["writes"] += 1
            ops = ["read_h", "read_p", "read_t", "train", "infer"] * 2 + ["bad"] * 4
            for op in rng.permutation(ops):
                layer = int(rng.integers(0, layers))
                k, fan_in = width[layer + 1], width[layer]
                if op == "read_h":
                    await tb.send(ctx, protocol.read_h_packet(layer, k))
                    got = protocol.parse_read_response(Opcode.READ_H, await tb.receive(ctx),
                                                       width=k, fan_in=fan_in)
                    np.testing.assert_array_equal(got, H[layer])
                elif op == "read_p":
                    await tb.send(ctx, protocol.read_p_packet(layer, k))
                    got = protocol.parse_read_response(Opcode.READ_P, await tb.receive(ctx),
                                                       width=k, classes=C)
                    np.testing.assert_array_equal(got, P[layer])
                elif op == "read_t":
                    await tb.send(ctx, protocol.read_t_packet(layer, k))
                    theta, flip = protocol.parse_read_response(
                        Opcode.READ_T, await tb.receive(ctx), width=k)
                    np.testing.assert_array_equal(theta, T[layer][0])
                    np.testing.assert_array_equal(flip, T[layer][1])
                elif op in ("train", "infer"):
                    await run_batch(ctx, Opcode.TRAIN if op == "train" else Opcode.INFER,
                                    layers, width)
                    counts[op] += 1
                else:
                    await refuse_one(ctx, layers, width, gamma, bases, H, P, T)
        assert tb.finishes == counts["train"]

    # Every kind of refusal comes up in a run: 12 refusals drawn from the 10 kinds in turn.
    kinds = ["opcode", "layer", "short_pt", "long_pt", "h_length", "read_payload", "count",
             "label", "batch_length", "config"]
    refusals = [kinds[i] for i in rng.permutation(len(kinds))] * 2

    async def refuse_one(ctx, layers, width, gamma, bases, H, P, T):
        layer = int(rng.integers(0, layers))
        k, fan_in = width[layer + 1], width[layer]
        case = refusals.pop(0)
        if case == "opcode":
            op = int(rng.choice([0x00, 0x03, 0x16, 0x7F, 0xFF]))
            words = [header_word(op, layer, 1)] + [0] * int(rng.integers(0, 3))
            await refused(ctx, words, ErrorCode.OPCODE)
        elif case == "layer":
            words = list(protocol.write_p_packet(0, rng.choice([-1, 1], size=(k, C))))
            words[0] = header_word(Opcode.WRITE_P, int(rng.integers(layers, 256)), k)
            await refused(ctx, words, ErrorCode.LAYER)
        elif case in ("short_pt", "long_pt"):
            is_p = rng.random() < 0.5
            if is_p:
                new = rng.choice([-1, 1], size=(k, C))
                words = list(protocol.write_p_packet(layer, new))
                payload = protocol.pack_p(new)
            else:
                new = (rng.integers(-32768, 32768, k), rng.integers(0, 2, k))
                words = list(protocol.write_t_packet(layer, *new))
                payload = protocol.pack_t(*new)
            if case == "short_pt":
                n = int(rng.integers(1, k + 1))      # payload words sent, tlast on the last
                words = words[:1 + n]
                if n == k:                           # a full packet without tlast, then more
                    words += [0]
                    failing = k - 1
                    await refused(ctx, words, ErrorCode.LENGTH)
                else:
                    failing = n - 1
                    await refused(ctx, words, ErrorCode.LENGTH)
            else:
                words += [0] * int(rng.integers(1, 3))
                failing = k - 1
                await refused(ctx, words, ErrorCode.LENGTH)
            # Rows before the failing word are written, the others keep their values.
            mem = mems["p" if is_p else "t"]
            old = protocol.pack_p(P[layer]) if is_p else protocol.pack_t(*T[layer])
            for n in range(k):
                expect = payload[n] if n < failing else old[n]
                assert ctx.get(mem.data[layer * MW + n]) == expect, f"row {n}, failing {failing}"
            if is_p:
                P[layer] = np.where(np.arange(k)[:, None] < failing, new, P[layer])
            else:
                T[layer] = tuple(np.where(np.arange(k) < failing, a, b)
                                 for a, b in zip(new, T[layer]))
        elif case == "h_length":
            new = odd_h(rng, k, fan_in)
            words = list(write_h_words(rng, layer, new))
            n_payload = len(words) - 1
            if rng.random() < 0.5:
                failing = int(rng.integers(0, n_payload))   # early tlast on this word
                words = words[:2 + failing]
                if failing == n_payload - 1:
                    words += [0]
            else:
                failing = n_payload - 1
                words += [0] * int(rng.integers(1, 3))
            await refused(ctx, words, ErrorCode.LENGTH, last_at=len(words) - 1)
            # A memory word is written when its last payload word comes before the
            # failing word.
            per = -(-fan_in // 4)
            q = lanes // 4
            nwords = -(-fan_in // lanes)
            model = H[layer].copy()
            for kk in range(k):
                for w in range(nwords):
                    done = kk * per + min((w + 1) * q, per) - 1
                    if done < failing:
                        cols = slice(w * lanes, min((w + 1) * lanes, fan_in))
                        model[kk, cols] = new[kk, cols]
            H[layer] = model
            await check_h(ctx, layer, model, bases[layer])
        elif case == "read_payload":
            op = rng.choice([Opcode.READ_H, Opcode.READ_P, Opcode.READ_T])
            words = [header_word(op, layer, k)] + [0] * int(rng.integers(1, 3))
            await refused(ctx, words, ErrorCode.LENGTH)
        elif case == "count":
            count = int(rng.choice([0, MB + 1, 0xFFFF]))
            a0 = rng.choice([-1, 1], size=(1, width[0]))
            words = list(protocol.train_packet(a0, [0], classes=C))
            words[0] = header_word(Opcode.TRAIN, 0, count)
            await refused(ctx, words, ErrorCode.LENGTH)
        elif case == "label":
            bs = int(rng.integers(1, MB + 1))
            a0 = rng.choice([-1, 1], size=(bs, width[0]))
            words = list(protocol.train_packet(a0, rng.integers(0, C, bs), classes=C))
            per = protocol.pattern_words(width[0])
            words[1 + per * int(rng.integers(0, bs))] = int(rng.choice(
                [C, int(rng.integers(C, 1 << 16))]))
            await refused(ctx, words, ErrorCode.LABEL)
        elif case == "batch_length":
            bs = int(rng.integers(1, MB + 1))
            a0 = rng.choice([-1, 1], size=(bs, width[0]))
            words = list(protocol.infer_packet(a0, classes=C))
            if rng.random() < 0.5:
                words = words[:int(rng.integers(1, len(words)))]
                if len(words) == 1:
                    words += [0]
            else:
                words += [0]
            await refused(ctx, words, ErrorCode.LENGTH)
        else:
            ctx.set(cfg.gamma[0], 0)
            await ctx.tick().repeat(cfg.latency + 2)
            await refused(ctx, protocol.read_t_packet(0, width[1]), ErrorCode.CONFIG)
            ctx.set(cfg.gamma[0], gamma[0])
            await ctx.tick().repeat(cfg.latency + 2)

    sim = Simulator(h)
    sim.add_clock(1e-6)
    sim.add_testbench(tb.forward_and_updates, background=True)
    sim.add_testbench(host)
    sim.run()
    assert counts["configs"] == 3 and counts["writes"] >= 3
    assert counts["train"] == counts["infer"] == 6
    assert counts["refused"] == {ErrorCode.OPCODE, ErrorCode.LENGTH, ErrorCode.LABEL,
                                 ErrorCode.CONFIG, ErrorCode.LAYER}
