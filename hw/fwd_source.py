"""Forward pass source: the weight and activation words of a layer, group by group."""

from amaranth import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import ReadPort
from amaranth.lib.wiring import In, Out

from xnorlearn.hw._params import check_int as _check_int

__all__ = ["ForwardSource"]


class ForwardSource(wiring.Component):
    """Reads the words of one layer's forward pass and streams them to the popcounts.

    The minibatch's ``bs`` patterns run in groups of ``patterns`` (G), the last group
    possibly partial. For each group, each neuron ``k`` of the layer and each of its
    ``words`` words ``w``, the source reads ``W`` word ``w_base + k * words + w`` and
    word ``a_base + group * a_words + w`` of ``A`` (one row holds the G patterns of a
    group), and emits both with the word's weight count (``lanes``, or ``last`` for a
    neuron's last word) and ``last`` set on the neuron's last word: no gap between words,
    neurons or groups. A group starts only once ``loaded`` covers all its patterns, so
    the forward pass of the first layer can follow the minibatch's load.

    The two read pipelines (``A``: one cycle, ``W``: two) and the two stages after the
    address move or hold together with ``o``: each read's enable is the pipeline's
    advance.

    Parameters
    ----------
    lanes : int
        Bits of a ``W`` word and of a pattern's ``A`` word, 32..1024.
    patterns : int
        Patterns per group (G), 1..64.
    max_batch, max_width : int
        Largest minibatch (1..1024) and layer width (1..4095).
    a_words : int
        Words of ``A`` per pattern row, 1..4095.
    addr_bits : int
        Bits of a ``W`` word address, 1..20.
    a_depth : int
        Words of ``A``, 1..2**20.

    Members
    -------
    start : ``In(1)``
        Begins a layer: the source takes ``w_base``, ``a_base`` and ``count``.
    w_base, a_base : ``In``
        First ``W`` word of the layer, first ``A`` word of its input region.
    count : ``In(range(max_batch + 1))``
        Patterns in the minibatch (``bs``), with ``start``.
    bs, bs_m1 : ``In``
        ``bs`` and ``bs - 1`` (registers), static during a layer.
    loaded : ``In(range(max_batch + 1))``
        Patterns whose ``A`` words are in memory.
    flush : ``In(1)``
        Empties the source (it forgets the layer).
    hold : ``In(1)``
        No word is generated in this cycle (those already generated go on): the consumers'
        way of pausing the source without backpressure on ``o``.
    layer : ``In(StructLayout({"base", "words_m1", "kout_m1", "last"}))``
        The layer's first ``W`` word, words per neuron - 1, width - 1 and weights of a
        neuron's last word; static during a layer.
    w_rd, a_rd : ``In(ReadPort.Signature(...))``
        The ``W`` read port (two cycles of latency, its pipeline moves with ``en``) and the
        ``A`` read port (one cycle, ``patterns * lanes`` bits).
    o : ``Out(stream.Signature(StructLayout({"a", "w", "count", "last"})))``
        The words: the group's row of ``A``, the ``W`` word, the weight count and the
        neuron's end.
    active : ``Out(1)``
        A layer is being read (from ``start`` until its last group has been generated).
    go : ``Out(1)``
        A word is generated in this cycle if the pipeline moves (not while ``hold``).
    mu : ``Out(range(max_batch + 1))``
        First pattern of the group being generated.
    empty : ``Out(1)``
        No word is in the two stages after the address.
    at_group : ``Out(1)``
        The generator stands at the first word of a group.

    Raises
    ------
    TypeError
        If a parameter is not an integer.
    ValueError
        If a parameter is out of range.
    """

    #: Latency of the ``W`` read port this source drives.
    W_LATENCY = 2

    def __init__(self, *, lanes, patterns, max_batch, max_width, a_words, addr_bits, a_depth):
        self._lanes = _check_int("lanes", lanes, 32, 1024)
        self._patterns = _check_int("patterns", patterns, 1, 64)
        self._max_batch = _check_int("max_batch", max_batch, 1, 1024)
        self._max_width = _check_int("max_width", max_width, 1, 4095)
        self._a_words = _check_int("a_words", a_words, 1, 4095)
        self._addr_bits = _check_int("addr_bits", addr_bits, 1, 20)
        self._a_depth = _check_int("a_depth", a_depth, 1, 1 << 20)
        words = Signal(range(a_words + 2))
        kout = Signal(range(max_width + 1))
        a_bits = (a_depth).bit_length()
        super().__init__({
            "start": In(1),
            "w_base": In(addr_bits),
            "a_base": In(range(a_depth + 1)),
            "count": In(range(max_batch + 1)),
            "bs": In(range(max_batch + 1)),
            "bs_m1": In(range(-1, max_batch)),
            "loaded": In(range(max_batch + 1)),
            "flush": In(1),
            "hold": In(1),
            "layer": In(data.StructLayout({
                "base": 32, "words_m1": (words - 1).shape(), "kout_m1": (kout - 1).shape(),
                "last": range(lanes + 1)})),
            "w_rd": In(ReadPort.Signature(addr_width=addr_bits, shape=lanes)),
            "a_rd": In(ReadPort.Signature(addr_width=a_bits, shape=patterns * lanes)),
            "o": Out(stream.Signature(data.StructLayout({
                "a": patterns * lanes, "w": lanes, "count": range(lanes + 1), "last": 1}))),
            "active": Out(1),
            "go": Out(1),
            "mu": Out(range(max_batch + 1)),
            "empty": Out(1),
            "at_group": Out(1),
        })

    lanes = property(lambda self: self._lanes)
    patterns = property(lambda self: self._patterns)
    max_batch = property(lambda self: self._max_batch)
    max_width = property(lambda self: self._max_width)
    a_words = property(lambda self: self._a_words)
    addr_bits = property(lambda self: self._addr_bits)
    a_depth = property(lambda self: self._a_depth)

    def elaborate(self, platform):
        m = Module()
        P, G, MB, MW = self._lanes, self._patterns, self._max_batch, self._max_width
        AW = self._a_words
        geo, bs = self.layer, self.bs

        g_active = Signal()
        g_mu = Signal(range(MB + 1))   # first pattern of the group
        g_k = Signal(range(MW + 1))
        g_w = Signal(range(AW + 1))
        g_waddr = Signal(self._addr_bits)
        g_abase = Signal(range(self._a_depth + 1))
        g_aaddr = Signal(range(self._a_depth + 1))   # g_abase + g_w, by counting
        if G > 1:
            g_need = Signal(range(MB + 1))   # min(g_mu + G, bs): end of the group
            g_go = g_active & ~self.hold & (g_need <= self.loaded)
            g_last_grp = g_need == bs
        else:
            g_go = g_active & ~self.hold & (g_mu < self.loaded)
            g_last_grp = g_mu == self.bs_m1
        # Two stages after the generator, which move or hold together: `r` (the A word out
        # of its block RAM, W in its rows' registers), `q` (A registered, W ORed).
        r_valid, q_valid = Signal(), Signal()
        r_count, q_count = Signal(range(P + 1)), Signal(range(P + 1))
        r_last, q_last = Signal(), Signal()
        q_a = Signal(G * P, reset_less=True)
        adv = ~q_valid | self.o.ready
        with m.If(adv):
            m.d.sync += [
                r_valid.eq(g_go),
                r_count.eq(Mux(g_w == geo.words_m1, geo.last, P)),
                r_last.eq(g_w == geo.words_m1),
                q_valid.eq(r_valid),
                q_count.eq(r_count),
                q_last.eq(r_last),
                q_a.eq(self.a_rd.data),
            ]
            with m.If(g_go):
                with m.If(g_w == geo.words_m1):
                    m.d.sync += g_w.eq(0)
                    with m.If(g_k == geo.kout_m1):
                        m.d.sync += [g_k.eq(0), g_waddr.eq(geo.base), g_abase.eq(g_abase + AW),
                                     g_aaddr.eq(g_abase + AW)]
                        if G > 1:
                            m.d.sync += [g_mu.eq(g_need),
                                         g_need.eq(Mux(g_need + G >= bs, bs, g_need + G))]
                        else:
                            m.d.sync += g_mu.eq(g_mu + 1)
                        with m.If(g_last_grp):
                            m.d.sync += g_active.eq(0)
                    with m.Else():
                        m.d.sync += [g_k.eq(g_k + 1), g_waddr.eq(g_waddr + 1),
                                     g_aaddr.eq(g_abase)]
                with m.Else():
                    m.d.sync += [g_w.eq(g_w + 1), g_waddr.eq(g_waddr + 1),
                                 g_aaddr.eq(g_aaddr + 1)]
        with m.If(self.start):
            m.d.sync += [g_active.eq(1), g_mu.eq(0), g_k.eq(0), g_w.eq(0),
                         g_waddr.eq(self.w_base), g_abase.eq(self.a_base),
                         g_aaddr.eq(self.a_base)]
            if G > 1:
                m.d.sync += g_need.eq(Mux(self.count > G, G, self.count))
        with m.If(self.flush):
            m.d.sync += [g_active.eq(0), r_valid.eq(0), q_valid.eq(0)]
        m.d.comb += [
            self.w_rd.addr.eq(g_waddr),
            self.w_rd.en.eq(adv),
            self.a_rd.addr.eq(g_aaddr),
            self.a_rd.en.eq(adv),
            self.o.valid.eq(q_valid),
            self.o.payload.a.eq(q_a),
            self.o.payload.w.eq(self.w_rd.data),
            self.o.payload.count.eq(q_count),
            self.o.payload.last.eq(q_last),
            self.active.eq(g_active),
            self.go.eq(g_go),
            self.mu.eq(g_mu),
            self.empty.eq(~r_valid & ~q_valid),
            self.at_group.eq((g_w == 0) & (g_k == 0)),
        ]
        return m
