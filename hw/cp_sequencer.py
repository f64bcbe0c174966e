"""CP update sequencer: a layer's pick list, streamed as the hidden-weight words to update."""

from amaranth import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import ReadPort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from xnorlearn.hw._arith import adder_tree, shifted_terms
from xnorlearn.hw._params import check_int as _check_int
from xnorlearn.hw.layer_config import layer_shapes

__all__ = ["CpSequencer", "pick_layout"]


def pick_layout(*, max_batch, max_width):
    """Layout of a pick list entry: the pattern ``mu`` and the neuron ``k``."""
    return data.StructLayout({"mu": range(max_batch), "k": range(max_width)})


class CpSequencer(wiring.Component):
    """Reads a layer's pick list and issues the CP update of every picked neuron, one
    hidden-weight word per cycle.

    Pick ``(mu, k)`` updates the ``words`` words of neuron ``k`` (from ``layer.base + k *
    words``) with the activations of pattern ``mu`` (its words of ``A`` from ``a_base +
    mu * a_words``) and ``rho = P[k][y_mu]``, the classifier
    weight of the pattern's true class. For each pick the sequencer reads the entry, then
    the classifier row ``P[k]`` (from ``row_base + k``) and the label ``y_mu``, through
    a five-stage prefetch that runs ahead of the words, so consecutive picks stream with no
    gap.

    A word's update is written back ``hazard`` cycles after it leaves (``H`` read, engine,
    write), and the memories are not read-transparent: a pick waits while a word of its
    neuron left in this cycle or one of the ``hazard - 1`` cycles before, so that it reads
    the write-back of the pick before it.

    Parameters
    ----------
    lanes : int
        Weights per word, 32..1024.
    max_batch, max_width : int
        The pick list entry's ranges (:func:`pick_layout`): 1..1024, 1..4095.
    classes : int
        Classes, 2..16 (bits of a classifier row).
    a_words : int
        Words of ``A`` per pattern, 1..4095.
    addr_bits : int
        Bits of a hidden-weight word address, 1..20.
    a_depth : int
        Words of ``A``, 1..2**20.
    list_depth, row_depth : int
        Depth of the pick list and of the classifier rows' memory, 1..2**20.
    hazard : int
        Cycles from a word leaving to its write-back, 1..16.

    Members
    -------
    clear : ``In(1)``
        While high, the sequencer forgets its progress: the next run starts at entry 0.
    run : ``In(1)``
        Picks may be fetched and issued (from ``clear`` low to ``done``).
    picks : ``In(range(list_depth + 1))``
        Entries in the pick list.
    list_base, row_base, a_base : ``In``
        The layer's first entry of the pick list, first row of the classifier rows, first
        word of ``A``.
    layer : ``In(StructLayout({"words", "words_m1", "last", "base"}))``
        Words per neuron (and minus one), weights of a neuron's last word, first word of
        the layer; static from ``clear`` to ``done``.
    pick_rd, row_rd, label_rd : ``In(ReadPort.Signature(...))``
        Read ports of the pick list, the classifier rows and the labels (one cycle of
        latency, not transparent).
    active : ``Out(1)``
        A pick is streaming its words: the ``H`` read goes to ``h_addr`` and the ``A``
        read to ``a_addr`` in this cycle.
    h_addr, a_addr : ``Out``
        Addresses of the word that leaves on ``o`` in the next cycle.
    o : ``Out(stream.Signature(StructLayout({"addr", "count", "rho"}), always_ready=True))``
        The words, registered: ``H`` address, weights in the word and ``rho``.
    done : ``Out(1)``
        Every pick has been issued: the last word is on ``o`` in this cycle or left
        before.

    Raises
    ------
    TypeError
        If a parameter is not an integer.
    ValueError
        If a parameter is out of range.
    """

    def __init__(self, *, lanes, max_batch, max_width, classes, a_words, addr_bits,
                 a_depth, list_depth, row_depth, hazard):
        self._lanes = _check_int("lanes", lanes, 32, 1024)
        self._max_batch = _check_int("max_batch", max_batch, 1, 1024)
        self._max_width = _check_int("max_width", max_width, 1, 4095)
        self._classes = _check_int("classes", classes, 2, 16)
        self._a_words = _check_int("a_words", a_words, 1, 4095)
        self._addr_bits = _check_int("addr_bits", addr_bits, 1, 20)
        self._a_depth = _check_int("a_depth", a_depth, 1, 1 << 20)
        self._list_depth = _check_int("list_depth", list_depth, 1, 1 << 20)
        self._row_depth = _check_int("row_depth", row_depth, 1, 1 << 20)
        self._hazard = _check_int("hazard", hazard, 1, 16)
        self._pick = pick_layout(max_batch=max_batch, max_width=max_width)
        label_bits = max(1, (classes - 1).bit_length())
        shapes = layer_shapes(lanes=lanes, max_words=a_words)
        super().__init__({
            "clear": In(1),
            "run": In(1),
            "picks": In(range(list_depth + 1)),
            "list_base": In(range(list_depth)),
            "row_base": In(range(row_depth)),
            "a_base": In(range(a_depth + 1)),
            "layer": In(data.StructLayout({
                "words": shapes["words"], "words_m1": shapes["words_m1"],
                "last": shapes["last"], "base": 32})),
            "pick_rd": In(ReadPort.Signature(addr_width=ceil_log2(list_depth),
                                             shape=self._pick)),
            "row_rd": In(ReadPort.Signature(addr_width=ceil_log2(row_depth),
                                            shape=unsigned(classes))),
            "label_rd": In(ReadPort.Signature(addr_width=ceil_log2(max_batch),
                                              shape=unsigned(label_bits))),
            "active": Out(1),
            "h_addr": Out(addr_bits),
            "a_addr": Out(range(a_depth + 1)),
            "o": Out(stream.Signature(data.StructLayout({
                "addr": addr_bits, "count": range(lanes + 1), "rho": 1}),
                always_ready=True)),
            "done": Out(1),
        })

    lanes = property(lambda self: self._lanes)
    max_batch = property(lambda self: self._max_batch)
    max_width = property(lambda self: self._max_width)
    classes = property(lambda self: self._classes)
    a_words = property(lambda self: self._a_words)
    addr_bits = property(lambda self: self._addr_bits)
    a_depth = property(lambda self: self._a_depth)
    list_depth = property(lambda self: self._list_depth)
    row_depth = property(lambda self: self._row_depth)
    hazard = property(lambda self: self._hazard)

    @property
    def pick_layout(self):
        return self._pick

    def elaborate(self, platform):
        m = Module()
        P, MW, MB = self._lanes, self._max_width, self._max_batch
        AW, waddr_bits = self._a_words, self._addr_bits
        geo = self.layer

        pf_i = Signal(range(self._list_depth + 1))
        f0_v, f1_v, f2_v, nx_v = Signal(), Signal(), Signal(), Signal()
        f1_k, f2_k, nx_k = Signal(range(MW)), Signal(range(MW)), Signal(range(MW))
        f1_mu, f2_mu = Signal(range(MB)), Signal(range(MB))
        f2_row = Signal(self._classes, reset_less=True)
        f2_y = Signal.like(self.label_rd.data, reset_less=True)
        nx_hbase = Signal(waddr_bits, reset_less=True)
        nx_abase = Signal(range(self._a_depth + 1), reset_less=True)
        nx_rho = Signal()
        cp_act = Signal()
        cp_w = Signal(range(AW + 1))
        cp_k = Signal(range(MW))
        cp_rho = Signal()
        cp_last_word = cp_w == geo.words_m1
        pi_v = [Signal(name=f"pi{d}_v") for d in range(self._hazard)]
        pi_k = [Signal(range(MW), name=f"pi{d}_k") for d in range(self._hazard)]
        m.d.sync += [pi_v[0].eq(cp_act), pi_k[0].eq(cp_k)]
        m.d.sync += [pi_v[d].eq(pi_v[d - 1]) for d in range(1, self._hazard)]
        m.d.sync += [pi_k[d].eq(pi_k[d - 1]) for d in range(1, self._hazard)]
        # Comparing neurons, not addresses, can hold a pick for up to `hazard` cycles more
        # than needed, only when a neuron follows itself, which is rare.
        hazard = ((cp_act & (nx_k == cp_k))
                  | Cat(v & (nx_k == k) for v, k in zip(pi_v, pi_k)).any())
        cp_take = self.run & nx_v & (~cp_act | cp_last_word) & ~hazard
        # The prefetch stages move or hold together (no ready chain through them).
        pf_en = ~nx_v | cp_take
        fetch = self.run & (pf_i < self.picks)
        fb_v = Signal()
        pk = Signal(self._pick)       # pick list entry, registered after its block RAM
        m.d.comb += [
            self.pick_rd.addr.eq(self.list_base + pf_i),
            self.pick_rd.en.eq(pf_en),
            self.row_rd.addr.eq(self.row_base + pk.k),
            self.row_rd.en.eq(pf_en),
            self.label_rd.addr.eq(pk.mu),
            self.label_rd.en.eq(pf_en),
        ]
        # `k * words` in the f1 and f2 stages, by a two-level adder tree.
        f2_prod, _ = adder_tree(m, shifted_terms(pk.k, geo.words, waddr_bits), waddr_bits,
                                "f2_prod", en=pf_en, arity=4, latency=2)
        with m.If(pf_en):
            m.d.sync += [f0_v.eq(fetch), pf_i.eq(pf_i + fetch),
                         fb_v.eq(f0_v), pk.eq(self.pick_rd.data),
                         f1_v.eq(fb_v), f1_k.eq(pk.k), f1_mu.eq(pk.mu),
                         f2_v.eq(f1_v), f2_k.eq(f1_k), f2_mu.eq(f1_mu),
                         f2_row.eq(self.row_rd.data), f2_y.eq(self.label_rd.data),
                         nx_v.eq(f2_v), nx_k.eq(f2_k),
                         nx_hbase.eq(geo.base + f2_prod),
                         nx_abase.eq(self.a_base + f2_mu * AW),
                         nx_rho.eq(f2_row.bit_select(f2_y, 1))]

        out = Signal.like(self.o.payload, reset_less=True)
        # Addresses of the word being issued, kept as `base + cp_w` by counting.
        cp_haddr = Signal(waddr_bits)
        cp_a_addr = Signal(range(self._a_depth + 1))
        m.d.sync += self.o.valid.eq(0)
        with m.If(cp_act):
            m.d.sync += [self.o.valid.eq(1), out.addr.eq(cp_haddr), out.rho.eq(cp_rho),
                         out.count.eq(Mux(cp_last_word, geo.last, P)), cp_w.eq(cp_w + 1),
                         cp_haddr.eq(cp_haddr + 1), cp_a_addr.eq(cp_a_addr + 1)]
            with m.If(cp_last_word):
                m.d.sync += cp_act.eq(0)
        with m.If(cp_take):
            m.d.sync += [cp_act.eq(1), cp_w.eq(0), cp_k.eq(nx_k), cp_rho.eq(nx_rho),
                         cp_haddr.eq(nx_hbase), cp_a_addr.eq(nx_abase)]
        with m.If(self.clear):
            m.d.sync += [pf_i.eq(0), f0_v.eq(0), fb_v.eq(0), f1_v.eq(0), f2_v.eq(0),
                         nx_v.eq(0), cp_act.eq(0)]
        m.d.comb += [
            self.o.payload.eq(out),
            self.active.eq(cp_act),
            self.h_addr.eq(cp_haddr),
            self.a_addr.eq(cp_a_addr),
            self.done.eq((pf_i == self.picks) & ~f0_v & ~fb_v & ~f1_v & ~f2_v & ~nx_v
                         & ~cp_act),
        ]
        return m
