"""Reinforcement sweep sequencer: every hidden-weight word of one layer, with the weights
its draws reinforce."""

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from xnorlearn.hw._params import check_draw_lanes, check_lanes
from xnorlearn.hw._params import check_int as _check_int
from xnorlearn.hw.layer_config import layer_shapes
from xnorlearn.hw.prng import ReinforceDraws
from xnorlearn.hw.update import THRESHOLD_BITS

__all__ = ["ReinforceSweep"]


class ReinforceSweep(wiring.Component):
    """Walks one layer's hidden weights word by word and delivers, for each word, which
    of its weights the draws reinforce.

    A layer of ``K_out`` neurons of ``K_in`` inputs has ``words = ceil(K_in / lanes)``
    words per neuron, stored from ``base`` on. Weight ``i`` of neuron ``k`` is draw number
    ``j = k * K_in + i`` of the sweep with key ``key``
    (:func:`~xnorlearn.sw.golden.prng.reinforce_draw`), so the sweep asks a
    :class:`~xnorlearn.hw.prng.ReinforceDraws` for ``draw_lanes`` consecutive draws per
    cycle, ``lanes / draw_lanes`` requests per full word and
    ``ceil(last / draw_lanes)`` for a neuron's last word of ``last`` weights, compares
    each draw with ``threshold`` as it comes (``draw < threshold``: the weight is
    reinforced), collects those bits and emits the word: its address, its weight count
    and its ``lanes`` bits (lanes past the count hold stale bits). A bit per weight
    instead of a 16-bit draw keeps the word's buffers and the update path's operand
    registers narrow.

    The draws pipeline never stalls: requests go out only while ``enable`` is high, and
    its output is taken as it comes. Each word leaves on ``o`` one cycle after its
    address is on ``h_addr`` (the cycle its last draws come out), so a ``H`` memory read
    from ``h_addr`` meets the word one cycle later.

    Parameters
    ----------
    lanes : int
        Weights per word, a multiple of 32 in 32..1024.
    draw_lanes : int
        Draws per cycle, a power of two dividing ``lanes``, at least 2.
    width_bits : int
        Bits of ``K_in``, 1..16.
    max_words : int
        Largest ``words`` per neuron, 1..4095.
    addr_bits : int
        Bits of a word address, 1..20.
    mul_stages : int
        Register stages per multiplication in the hashers, 1..4 (default 3).

    Members
    -------
    clear : ``In(1)``
        While high, the sweep returns to its start and forgets its key: the next sweep
        begins at ``base``. Must stay low from the first request to ``done``.
    base : ``In(addr_bits)``
        Address of the layer's first word, sampled while ``clear`` is high.
    layer : ``In(StructLayout)``
        The layer's ``kin`` (``K_in``), ``kout_m1`` (``K_out - 1``), ``words_m1``
        (``words - 1``), ``last`` (weights of a neuron's last word, 1..lanes) and
        ``chunks_m1`` (requests of a neuron's last word - 1); static during a sweep.
    key : ``In(stream.Signature(unsigned(32), always_ready=True))``
        The sweep key, taken once after ``clear``.
    threshold : ``In(unsigned(17))``
        A weight is reinforced when its draw is below it (0: none, 65536: all); static
        during a sweep.
    enable : ``In(1)``
        Requests may go out.
    h_addr : ``Out(addr_bits)``
        Address of the word whose draws complete in this cycle.
    o : ``Out(stream.Signature(StructLayout({"addr", "count", "hit"}), always_ready=True))``
        One word per valid cycle, in address order, registered.
    done : ``Out(1)``
        The key has come, every word has been requested and the last one has left on
        ``o``.

    Attributes
    ----------
    lanes, draw_lanes, width_bits, max_words, addr_bits, mul_stages : int
        The parameters.
    latency : int
        Cycles from a word's last request to its address on ``h_addr``.

    Raises
    ------
    TypeError
        If a parameter is not an integer.
    ValueError
        If a parameter is out of range, or ``draw_lanes`` is not a power of two dividing
        ``lanes``.
    """

    def __init__(self, *, lanes, draw_lanes, width_bits, max_words, addr_bits, mul_stages=3):
        self._lanes = check_lanes(lanes)
        self._draw_lanes = check_draw_lanes(draw_lanes, lanes)
        self._width_bits = _check_int("width_bits", width_bits, 1, 16)
        self._max_words = _check_int("max_words", max_words, 1, 4095)
        self._addr_bits = _check_int("addr_bits", addr_bits, 1, 20)
        self._mul_stages = _check_int("mul_stages", mul_stages, 1, 4)
        shapes = layer_shapes(lanes=lanes, max_words=max_words, width_bits=width_bits,
                              draw_lanes=draw_lanes)
        self._geometry = data.StructLayout({
            name: shapes[name] for name in ("kin", "kout_m1", "words_m1", "last", "chunks_m1")})
        super().__init__({
            "clear": In(1),
            "base": In(addr_bits),
            "layer": In(self._geometry),
            "key": In(stream.Signature(32, always_ready=True)),
            "threshold": In(THRESHOLD_BITS),
            "enable": In(1),
            "h_addr": Out(addr_bits),
            "o": Out(stream.Signature(data.StructLayout({
                "addr": addr_bits, "count": range(lanes + 1),
                "hit": lanes}), always_ready=True)),
            "done": Out(1),
        })

    lanes = property(lambda self: self._lanes)
    draw_lanes = property(lambda self: self._draw_lanes)
    width_bits = property(lambda self: self._width_bits)
    max_words = property(lambda self: self._max_words)
    addr_bits = property(lambda self: self._addr_bits)
    mul_stages = property(lambda self: self._mul_stages)

    @property
    def latency(self):
        return ReinforceDraws.latency_for(self._mul_stages)

    def elaborate(self, platform):
        m = Module()
        P, D = self._lanes, self._draw_lanes
        CH = P // D
        m.submodules.draws = draws = ReinforceDraws(
            lanes=D, mul_stages=self._mul_stages, tag_shape=data.StructLayout({
                "addr": self._addr_bits, "count": range(P + 1), "chunk": range(max(CH, 2)),
                "last": 1}))
        assert draws.latency == self.latency
        geo = self.layer

        key = Signal(32, reset_less=True)
        key_v = Signal()
        gen = Signal()                # requests left to make
        k = Signal(range((1 << self._width_bits) + 1))
        w = Signal(range(self._max_words + 1))
        c = Signal(range(max(CH, 2)))
        row = Signal(32)              # draw index of the neuron's first weight
        start = Signal(32)
        nxt = Signal(self._addr_bits)
        # Requests in the draws pipeline, bounded by its depth.
        pending = Signal(range(64))
        assert draws.latency < 64
        with m.If(self.clear):
            m.d.sync += [key_v.eq(0), gen.eq(1), k.eq(0), w.eq(0), c.eq(0), row.eq(0),
                         start.eq(0), nxt.eq(self.base)]
        with m.Elif(self.key.valid):
            m.d.sync += [key.eq(self.key.payload), key_v.eq(1)]

        word_last = w == geo.words_m1
        chunk_last = Mux(word_last, c == geo.chunks_m1, c == CH - 1)
        req = draws.i.valid & draws.i.ready
        m.d.comb += [
            draws.i.valid.eq(self.enable & key_v & gen),
            draws.i.payload.key.eq(key),
            draws.i.payload.start.eq(start),
            draws.i.payload.tag.addr.eq(nxt),
            draws.i.payload.tag.count.eq(Mux(word_last, geo.last, P)),
            draws.i.payload.tag.chunk.eq(c),
            draws.i.payload.tag.last.eq(chunk_last),
        ]
        with m.If(req):
            with m.If(chunk_last):
                m.d.sync += [c.eq(0), nxt.eq(nxt + 1)]
                with m.If(word_last):
                    m.d.sync += [w.eq(0), row.eq(row + geo.kin), start.eq(row + geo.kin),
                                 k.eq(k + 1)]
                    with m.If(k == geo.kout_m1):
                        m.d.sync += gen.eq(0)
                with m.Else():
                    m.d.sync += [w.eq(w + 1), start.eq(start + D)]
            with m.Else():
                m.d.sync += [c.eq(c + 1), start.eq(start + D)]

        dout = draws.o.payload
        got = draws.o.valid
        m.d.comb += [draws.o.ready.eq(1), self.h_addr.eq(dout.tag.addr)]
        m.d.sync += pending.eq(pending + req - got)
        hits = Cat(dout.draw[n] < self.threshold for n in range(D))
        # Chunk CH-1 always ends its word, so it needs no buffer.
        buf = [Signal(D, name=f"buf{s}", reset_less=True) for s in range(CH - 1)]
        merged = Cat(*(Mux(dout.tag.chunk == s, hits, buf[s]) for s in range(CH - 1)), hits)
        with m.If(got):
            for s in range(CH - 1):
                with m.If(dout.tag.chunk == s):
                    m.d.sync += buf[s].eq(hits)
        issue = got & dout.tag.last
        out = Signal.like(self.o.payload, reset_less=True)
        m.d.sync += self.o.valid.eq(issue)
        with m.If(issue):
            m.d.sync += [out.addr.eq(dout.tag.addr), out.count.eq(dout.tag.count),
                         out.hit.eq(merged)]
        m.d.comb += [self.o.payload.eq(out),
                     self.done.eq(key_v & ~gen & (pending == 0) & ~self.o.valid)]
        return m
