"""Forward pass source: the weight and activation words of a layer, group by group."""

from amaranth import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory, ReadPort
from amaranth.lib.wiring import In, Out

from xnorlearn.hw._params import check_int as _check_int

__all__ = ["ForwardSource"]


class ForwardSource(wiring.Component):
    """Reads the words of one layer's forward pass and streams them to the popcounts.

    The minibatch's ``bs`` patterns run in groups of ``patterns`` (G), the last group
    possibly partial. For each group, each neuron ``k`` of the layer and each of its
    ``words`` words ``w``, the source reads ``W`` word ``w_base + k * words + w`` and emits
    it with word ``w`` of each of the group's patterns (``A`` word ``a_base + mu *
    a_words + w`` for pattern ``mu``), the word's weight count (``lanes``, or ``last``
    for a neuron's last word) and ``last`` set on the neuron's last word: no gap between
    words, neurons or groups.

    ``A`` is read once per group, not once per neuron: a group's words are copied into a
    cache of two buffers (``2 * a_words`` words of ``patterns * lanes`` bits), one
    ``lanes``-bit word of ``A`` a cycle, while the group before it is generated from the
    other buffer. A pattern's words are copied once ``loaded`` covers it, so the forward
    pass of the first layer can follow the minibatch's load; a group is generated once it
    is in the cache.

    The ``W`` read pipeline (two cycles), the cache's (one) and the two stages after the
    address move or hold together with ``o``: each read's enable is the pipeline's
    advance. While ``o.ready`` stays high, two words that end an output word of the layer
    (neuron ``k`` with ``k % lanes == lanes - 1``, or the layer's last neuron) leave at
    least ``end_gap`` cycles apart: what consumes the layer's outputs may take
    ``end_gap`` cycles to store each output word.

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
    end_gap : int
        Cycles between two words that end an output word, 1..64.

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
        ``A`` read port (one cycle, ``lanes`` bits; the address is valid while ``en``).
    o : ``Out(stream.Signature(StructLayout({"a", "w", "count", "last"})))``
        The words: the group's patterns' words of ``A`` (pattern ``j`` of the group in
        bits ``j * lanes`` up), the ``W`` word, the weight count and the neuron's end.
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

    def __init__(self, *, lanes, patterns, max_batch, max_width, a_words, addr_bits, a_depth,
                 end_gap=1):
        self._lanes = _check_int("lanes", lanes, 32, 1024)
        self._patterns = _check_int("patterns", patterns, 1, 64)
        self._max_batch = _check_int("max_batch", max_batch, 1, 1024)
        self._max_width = _check_int("max_width", max_width, 1, 4095)
        self._a_words = _check_int("a_words", a_words, 1, 4095)
        self._addr_bits = _check_int("addr_bits", addr_bits, 1, 20)
        self._a_depth = _check_int("a_depth", a_depth, 1, 1 << 20)
        self._end_gap = _check_int("end_gap", end_gap, 1, 64)
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
            "a_rd": In(ReadPort.Signature(addr_width=a_bits, shape=lanes)),
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
    end_gap = property(lambda self: self._end_gap)

    def elaborate(self, platform):
        m = Module()
        P, G, MB, MW = self._lanes, self._patterns, self._max_batch, self._max_width
        AW, gap = self._a_words, self._end_gap
        geo, bs = self.layer, self.bs
        a_range = range(self._a_depth + 1)

        # The group cache: two buffers of `a_words` words, one filled while the other is
        # read, so that A is read once per group (`lanes` bits a cycle) and not once per
        # neuron (`patterns * lanes` bits a cycle).
        m.submodules.cache = cache = Memory(shape=G * P, depth=2 * AW, init=[])
        c_wr = cache.write_port(granularity=P) if G > 1 else cache.write_port()
        c_rd = cache.read_port()

        # Groups whose fill is issued, and whose fill is written, ahead of the group being
        # generated (0..2): a buffer is filled again once its group has been generated.
        lead_issued = Signal(range(3))
        lead_written = Signal(range(3))

        # -- fill: pattern by pattern, word by word, each once it is loaded -------------------
        f_active = Signal()
        f_pat = Signal(range(MB + 1))        # pattern being read
        f_need = Signal(range(MB + 1))       # end of its group: min(first + G, bs)
        f_j = Signal(range(G))               # its lane
        f_w = Signal(range(AW + 1))
        f_buf = Signal()
        f_paddr = Signal(a_range)            # a_base + f_pat * a_words, by counting
        f_addr = Signal(a_range)             # f_paddr + f_w, by counting
        f_go = f_active & (lead_issued != 2) & (f_pat < self.loaded)
        f_grp_end = f_go & (f_w == geo.words_m1) & (f_pat + 1 == f_need)
        # The fill's write, one cycle after its read.
        w1_valid, w1_end = Signal(), Signal()
        w1_j = Signal(range(G))
        w1_addr = Signal(range(2 * AW))
        m.d.sync += [w1_valid.eq(f_go), w1_end.eq(f_grp_end), w1_j.eq(f_j),
                     w1_addr.eq(Mux(f_buf, AW, 0) + f_w)]
        m.d.comb += [
            self.a_rd.addr.eq(f_addr),
            self.a_rd.en.eq(f_go),
            c_wr.addr.eq(w1_addr),
            c_wr.data.eq(self.a_rd.data.replicate(G)),
        ]
        if G > 1:
            m.d.comb += c_wr.en.eq(Mux(w1_valid, 1 << w1_j, 0))
        else:
            m.d.comb += c_wr.en.eq(w1_valid)
        with m.If(f_go):
            with m.If(f_w == geo.words_m1):
                m.d.sync += [f_w.eq(0), f_pat.eq(f_pat + 1), f_paddr.eq(f_paddr + AW),
                             f_addr.eq(f_paddr + AW), f_j.eq(f_j + 1)]
                with m.If(f_pat + 1 == f_need):
                    m.d.sync += [f_j.eq(0), f_buf.eq(~f_buf),
                                 f_need.eq(Mux(f_need + G >= bs, bs, f_need + G))]
                    with m.If(f_need == bs):
                        m.d.sync += f_active.eq(0)
            with m.Else():
                m.d.sync += [f_w.eq(f_w + 1), f_addr.eq(f_addr + 1)]

        # -- generation: for each group, each neuron, each word ------------------------------
        g_active = Signal()
        g_mu = Signal(range(MB + 1))   # first pattern of the group
        g_need = Signal(range(MB + 1))   # min(g_mu + G, bs): end of the group
        g_k = Signal(range(MW + 1))
        g_w = Signal(range(AW + 1))
        g_buf = Signal()
        g_waddr = Signal(self._addr_bits)
        g_ready = g_active & ~self.hold & (lead_written != 0)
        adv = ~self.o.valid | self.o.ready   # the generator and the stages after it move
        g_neuron_end = g_w == geo.words_m1
        g_layer_end = g_k == geo.kout_m1
        if gap > 1:
            # A word that ends an output word (a neuron `lanes - 1` modulo `lanes`, or the
            # layer's last) waits until `end_gap` cycles have passed since the last one.
            g_kbit = Signal(range(P))
            g_gap = Signal(range(gap))
            g_out_end = g_neuron_end & ((g_kbit == P - 1) | g_layer_end)
            g_go = g_ready & ~(g_out_end & (g_gap != 0))
            with m.If(adv & g_go & g_out_end):
                m.d.sync += g_gap.eq(gap - 1)
            with m.Elif(g_gap != 0):
                m.d.sync += g_gap.eq(g_gap - 1)
        else:
            g_go = g_ready
        g_grp_end = adv & g_go & g_neuron_end & g_layer_end
        m.d.sync += [
            lead_issued.eq(lead_issued + f_grp_end - g_grp_end),
            lead_written.eq(lead_written + (w1_valid & w1_end) - g_grp_end),
        ]
        # Two stages after the generator, which move or hold together: `r` (the cache word
        # out of its memory, W in its rows' registers), `q` (the cache word registered, W
        # ORed).
        r_valid, q_valid = Signal(), Signal()
        r_count, q_count = Signal(range(P + 1)), Signal(range(P + 1))
        r_last, q_last = Signal(), Signal()
        q_a = Signal(G * P, reset_less=True)
        with m.If(adv):
            m.d.sync += [
                r_valid.eq(g_go),
                r_count.eq(Mux(g_neuron_end, geo.last, P)),
                r_last.eq(g_neuron_end),
                q_valid.eq(r_valid),
                q_count.eq(r_count),
                q_last.eq(r_last),
                q_a.eq(c_rd.data),
            ]
            with m.If(g_go):
                with m.If(g_neuron_end):
                    m.d.sync += g_w.eq(0)
                    if gap > 1:
                        m.d.sync += g_kbit.eq(Mux(g_layer_end | (g_kbit == P - 1), 0,
                                                  g_kbit + 1))
                    with m.If(g_layer_end):
                        m.d.sync += [g_k.eq(0), g_waddr.eq(geo.base), g_buf.eq(~g_buf),
                                     g_mu.eq(g_need),
                                     g_need.eq(Mux(g_need + G >= bs, bs, g_need + G))]
                        with m.If(g_need == bs):
                            m.d.sync += g_active.eq(0)
                    with m.Else():
                        m.d.sync += [g_k.eq(g_k + 1), g_waddr.eq(g_waddr + 1)]
                with m.Else():
                    m.d.sync += [g_w.eq(g_w + 1), g_waddr.eq(g_waddr + 1)]
        with m.If(self.start):
            first = Mux(self.count > G, G, self.count)
            m.d.sync += [g_active.eq(1), g_mu.eq(0), g_need.eq(first), g_k.eq(0), g_w.eq(0),
                         g_buf.eq(0), g_waddr.eq(self.w_base),
                         f_active.eq(1), f_pat.eq(0), f_need.eq(first), f_j.eq(0), f_w.eq(0),
                         f_buf.eq(0), f_paddr.eq(self.a_base), f_addr.eq(self.a_base),
                         lead_issued.eq(0), lead_written.eq(0)]
            if gap > 1:
                m.d.sync += [g_kbit.eq(0), g_gap.eq(0)]
        with m.If(self.flush):
            m.d.sync += [g_active.eq(0), r_valid.eq(0), q_valid.eq(0), f_active.eq(0),
                         w1_valid.eq(0), lead_issued.eq(0), lead_written.eq(0)]
        m.d.comb += [
            self.w_rd.addr.eq(g_waddr),
            self.w_rd.en.eq(adv),
            c_rd.addr.eq(Mux(g_buf, AW, 0) + g_w),
            c_rd.en.eq(adv),
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
