"""Pick drain: the group selectors' picks of a layer, filtered by the classifiers' update
decisions and appended to the layer's pick list in pattern order."""

from amaranth import Array, Cat, Module, Mux, ResetInserter, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import WritePort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from xnorlearn.hw._params import check_int as _check_int
from xnorlearn.hw.cp_sequencer import pick_layout

__all__ = ["PickDrain"]


class PickDrain(wiring.Component):
    """Collects the picks of ``patterns`` (G) lanes and writes those of patterns that need
    an update to the pick list.

    Lane ``j`` of a group of G patterns carries pattern ``mu0 + j``: one item per group of
    neurons from its :class:`~xnorlearn.hw.selector.GroupSelector` (the neuron it picks, or
    none, and ``last`` on the pattern's last group), and, once per group of patterns, one
    word of G update decisions from the classifiers. Each lane's picks wait in a FIFO of
    ``max_groups + 16 + slack`` entries, the decisions in one of ``32 + slack``; the FIFOs
    are drained lane by lane, one pick per cycle, so the list keeps the order of the golden model: pattern,
    then group. Lanes past the minibatch's ``bs`` patterns (in its last, partial group)
    carry nothing and are skipped.

    Parameters
    ----------
    patterns : int
        Lanes (G), 1..64.
    max_batch, max_width : int
        Largest minibatch (1..1024) and layer width (1..4095).
    max_groups : int
        Largest number of groups per layer, 1..64.
    list_depth : int
        Entries of the pick list memory, 1..2**20.
    slack : int
        Entries each FIFO has beyond what ``room`` promises, 0..256 (default 0): items
        that are already on their way when ``room`` falls (a producer that reacts to it
        late, or through a pipeline).

    Members
    -------
    picks : ``In(stream.Signature(StructLayout({"index", "valid", "last"}), always_ready=True)).array(patterns)``
        The lanes' selector outputs. A pick is lost if its FIFO is full: present a group
        of patterns only while ``room`` is high.
    decisions : ``In(stream.Signature(patterns, always_ready=True))``
        Bit ``j``: pattern ``mu0 + j`` needs an update.
    flush : ``In(1)``
        Empties the FIFOs.
    start : ``In(1)``
        Begins a layer: the list restarts at ``list_base``, the pattern count at 0.
    bs : ``In(range(max_batch + 1))``
        Patterns in the minibatch, static during a layer.
    list_base : ``In(range(list_depth))``
        The layer's first entry of the pick list.
    pick_wr : ``In(WritePort.Signature(...))``
        Write port of the pick list (entries :func:`~xnorlearn.hw.cp_sequencer.pick_layout`).
    room : ``Out(1)``
        Every FIFO has room for a group of patterns more (8 decision words, ``max_groups +
        8`` picks per lane): the producers may go on.
    count : ``Out``
        Entries written to the list since ``start``.
    drained : ``Out(range(max_batch + 1))``
        Patterns whose picks have all left the FIFOs.

    Raises
    ------
    TypeError
        If a parameter is not an integer.
    ValueError
        If a parameter is out of range.
    """

    def __init__(self, *, patterns, max_batch, max_width, max_groups, list_depth, slack=0):
        self._patterns = _check_int("patterns", patterns, 1, 64)
        self._max_batch = _check_int("max_batch", max_batch, 1, 1024)
        self._max_width = _check_int("max_width", max_width, 1, 4095)
        self._max_groups = _check_int("max_groups", max_groups, 1, 64)
        self._list_depth = _check_int("list_depth", list_depth, 1, 1 << 20)
        self._slack = _check_int("slack", slack, 0, 256)
        self._pick = pick_layout(max_batch=max_batch, max_width=max_width)
        item = data.StructLayout({"index": max(1, (max_width - 1).bit_length()), "valid": 1,
                                 "last": 1})
        super().__init__({
            "picks": In(stream.Signature(item, always_ready=True)).array(patterns),
            "decisions": In(stream.Signature(patterns, always_ready=True)),
            "flush": In(1),
            "start": In(1),
            "bs": In(range(max_batch + 1)),
            "list_base": In(range(list_depth)),
            "pick_wr": In(WritePort.Signature(addr_width=ceil_log2(list_depth),
                                              shape=self._pick)),
            "room": Out(1),
            "count": Out(range(max_batch * max_groups + 1)),
            "drained": Out(range(max_batch + 1)),
        })

    patterns = property(lambda self: self._patterns)
    max_batch = property(lambda self: self._max_batch)
    max_width = property(lambda self: self._max_width)
    max_groups = property(lambda self: self._max_groups)
    list_depth = property(lambda self: self._list_depth)
    slack = property(lambda self: self._slack)

    def elaborate(self, platform):
        m = Module()
        G, MG = self._patterns, self._max_groups
        item = self.picks[0].payload.shape()
        flushed = ResetInserter({"sync": self.flush})
        fifos = [SyncFIFO(width=item.size, depth=MG + 16 + self._slack) for _ in range(G)]
        dec_fifo = SyncFIFO(width=G, depth=32 + self._slack)
        for j, fifo in enumerate(fifos):
            m.submodules[f"pick_fifo{j}" if j else "pick_fifo"] = flushed(fifo)
            m.d.comb += [fifo.w_en.eq(self.picks[j].valid),
                         fifo.w_data.eq(self.picks[j].payload)]
        m.submodules.dec_fifo = flushed(dec_fifo)
        m.d.comb += [dec_fifo.w_en.eq(self.decisions.valid),
                     dec_fifo.w_data.eq(self.decisions.payload),
                     self.room.eq(Cat(f.level < MG + 8 for f in fifos).all()
                                  & (dec_fifo.level < 8))]

        drain_mu = Signal(range(self._max_batch + 1))
        pick_n = Signal.like(self.count)
        head = Signal(item)
        wr = self.pick_wr
        if G > 1:
            drain_j = Signal(range(G))
            m.d.comb += head.eq(Array(f.r_data for f in fifos)[drain_j])
            drain = Array(f.r_rdy for f in fifos)[drain_j] & dec_fifo.r_rdy
            keep = drain & head.valid & dec_fifo.r_data.bit_select(drain_j, 1)
            lane_end = (drain_j == G - 1) | (drain_mu + 1 == self.bs)
            for j, fifo in enumerate(fifos):
                m.d.comb += fifo.r_en.eq(drain & (drain_j == j))
            m.d.comb += dec_fifo.r_en.eq(drain & head.last & lane_end)
            with m.If(drain & head.last):
                m.d.sync += drain_j.eq(Mux(lane_end, 0, drain_j + 1))
        else:
            m.d.comb += head.eq(fifos[0].r_data)
            drain = fifos[0].r_rdy & dec_fifo.r_rdy
            keep = drain & head.valid & dec_fifo.r_data
            m.d.comb += [fifos[0].r_en.eq(drain), dec_fifo.r_en.eq(drain & head.last)]
        m.d.comb += [
            wr.addr.eq(self.list_base + pick_n),
            wr.data.mu.eq(drain_mu),
            wr.data.k.eq(head.index),
            wr.en.eq(keep),
            self.count.eq(pick_n),
            self.drained.eq(drain_mu),
        ]
        with m.If(keep):
            m.d.sync += pick_n.eq(pick_n + 1)
        with m.If(drain & head.last):
            m.d.sync += drain_mu.eq(drain_mu + 1)
        with m.If(self.start):
            m.d.sync += [drain_mu.eq(0), pick_n.eq(0)]
            if G > 1:
                m.d.sync += drain_j.eq(0)
        return m
