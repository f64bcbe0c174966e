"""Local classifier of one layer: class scores, argmax / top-2 margin and the error decision."""

from amaranth import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from xnorlearn.hw._params import check_int as _check_int

__all__ = ["LocalClassifier"]

MAX_CLASSES = 16
MAX_WIDTH = 1 << 20




def _top2_tree(m, values):
    """Tournament tree over ``values`` (lowest index first).

    Returns ``(top1, index, top2)``: the maximum, the lowest index holding it, and the largest
    value of all the other entries. Each node merges a lower-index pair ``a`` with a
    higher-index pair ``b``; ``b`` wins only when strictly greater, which keeps ties on the
    lowest index. A leaf has no second value: it gets the most negative code of the shape,
    which no real score reaches (see :class:`LocalClassifier`).
    """
    shape = values[0].shape()
    floor = Const(-(1 << (shape.width - 1)), shape)
    idx_shape = unsigned(max(1, (len(values) - 1).bit_length()))
    nodes = [(v, Const(c, idx_shape), floor) for c, v in enumerate(values)]
    level = 0
    while len(nodes) > 1:
        merged = []
        for n in range(0, len(nodes) - 1, 2):
            (a1, ai, a2), (b1, bi, b2) = nodes[n], nodes[n + 1]
            name = f"l{level}_n{n // 2}"
            top1, index, top2 = (Signal(shape, name=f"{name}_top1"),
                                 Signal(idx_shape, name=f"{name}_index"),
                                 Signal(shape, name=f"{name}_top2"))
            b_wins = b1 > a1
            m.d.comb += [
                top1.eq(Mux(b_wins, b1, a1)),
                index.eq(Mux(b_wins, bi, ai)),
                top2.eq(Mux(b_wins, Mux(a1 > b2, a1, b2), Mux(b1 > a2, b1, a2))),
            ]
            merged.append((top1, index, top2))
        if len(nodes) % 2:
            merged.append(nodes[-1])
        nodes = merged
        level += 1
    return nodes[0]


class LocalClassifier(wiring.Component):
    """Local classifier and loss of one layer.

    Streams one pattern's activations through the layer's fixed random projection
    ``P`` and accumulates the class scores ``yhat_c = sum_k a_k * P[k][c]``; after the
    pattern's last neuron it emits the scores, the predicted class (argmax, ties to the
    lowest index), the margin ``top1 - top2`` (``top2`` is the largest score of the other
    classes, so a tie for the top gives margin 0) and the update decision
    ``(pred != label) or (margin < robustness)``. This is
    :func:`~xnorlearn.sw.golden.literal.local_output`,
    :func:`~xnorlearn.sw.golden.literal.argmax_margin` and
    :func:`~xnorlearn.sw.golden.literal.needs_update` in hardware.

    ``label`` travels in the payload of each input item and is used only on the item with
    ``last`` set, so patterns of different classes can follow each other back to back.
    ``robustness`` is a configuration port (one value per layer); it is sampled together
    with the ``last`` item, so changing it never affects a pattern already accepted.

    Timing: one input item per cycle. The scores are summed by ``classes`` up/down counters;
    the argmax / top-2 search is a combinational tournament tree of
    ``ceil(log2(classes))`` levels (4 for 16 classes, 3 comparators per node) between two
    pipeline registers. Latency 3 cycles (accumulate -> tree -> margin and decision): the
    result can be taken on the third clock edge after the one that accepts the ``last``
    item. Up to three patterns are in flight, so a
    stream of one-neuron patterns still runs at one pattern per cycle; ``i.ready`` falls
    only when the output is stalled and the pipeline is full.

    A pattern must have at most ``max_width`` items; longer patterns wrap the counters.

    Parameters
    ----------
    classes : int
        Number of classes ``c``, 2..16.
    max_width : int
        Largest layer width ``K`` (neurons per pattern), 1..2**20; sets the counter widths.

    Attributes
    ----------
    i : ``In(stream.Signature(input_layout))``
        One item per neuron ``k``, in neuron order. Payload fields: ``act`` (``a_k``,
        1 = +1), ``row`` (``P[k]`` packed little-endian, bit ``c`` = ``P[k][c]``, 1 = +1),
        ``label`` (``unsigned(label_bits)``, the pattern's true class, read with ``last``;
        a value ``>= classes`` never matches ``pred`` and so always requests an update),
        ``last`` (1 on the pattern's final neuron).
    robustness : ``In(unsigned(margin_bits))``
        Robustness threshold ``R`` (``R = ceil(r * K)``, at most ``2 * K``); any
        ``R > 2 * K`` (it fits) updates every pattern.
    o : ``Out(stream.Signature(output_layout))``
        One item per pattern. Payload fields: ``yhat`` (``ArrayLayout(score_shape,
        classes)``), ``pred`` (``unsigned(label_bits)``), ``margin``
        (``unsigned(margin_bits)``), ``update`` (1 bit).

    Raises
    ------
    TypeError
        If a parameter is not an integer.
    ValueError
        If a parameter is out of its range.
    """

    def __init__(self, *, classes, max_width):
        _check_int("classes", classes, 2, MAX_CLASSES)
        _check_int("max_width", max_width, 1, MAX_WIDTH)
        self._classes = classes
        self._max_width = max_width
        super().__init__({
            "i": In(stream.Signature(self.input_layout)),
            "robustness": In(unsigned(self.margin_bits)),
            "o": Out(stream.Signature(self.output_layout)),
        })

    @property
    def classes(self):
        """Number of classes."""
        return self._classes

    @property
    def max_width(self):
        """Largest supported number of neurons per pattern."""
        return self._max_width

    @property
    def score_shape(self):
        """Shape of one class score: signed, holds ``-max_width..max_width``."""
        return signed(self._max_width.bit_length() + 1)

    @property
    def label_bits(self):
        """Width of ``label`` and ``pred``."""
        return max(1, (self._classes - 1).bit_length())

    @property
    def margin_bits(self):
        """Width of ``margin`` (holds ``0..2 * max_width``)."""
        return (2 * self._max_width).bit_length()

    @property
    def input_layout(self):
        """Payload layout of ``i``."""
        return data.StructLayout({
            "act": 1,
            "row": self._classes,
            "label": self.label_bits,
            "last": 1,
        })

    @property
    def output_layout(self):
        """Payload layout of ``o``."""
        return data.StructLayout({
            "yhat": data.ArrayLayout(self.score_shape, self._classes),
            "pred": self.label_bits,
            "margin": self.margin_bits,
            "update": 1,
        })

    def elaborate(self, platform):
        m = Module()
        classes, score = self._classes, self.score_shape
        yhat_layout = data.ArrayLayout(score, classes)
        r_shape = self.robustness.shape()

        # Stage registers; each loads when it is empty or its successor takes its item.
        s1_valid = Signal()
        s1_yhat = Signal(yhat_layout)
        s1_label = Signal(self.label_bits)
        s1_r = Signal(r_shape)
        s2_valid = Signal()
        s2_yhat = Signal(yhat_layout)
        s2_label = Signal(self.label_bits)
        s2_r = Signal(r_shape)
        s2_pred = Signal(self.label_bits)
        s2_top1 = Signal(score)
        s2_top2 = Signal(score)

        o_free = ~self.o.valid | self.o.ready
        s2_free = ~s2_valid | o_free
        s1_free = ~s1_valid | s2_free
        m.d.comb += self.i.ready.eq(s1_free)
        take = self.i.valid & self.i.ready

        # Accumulate: +1 where a_k == P[k][c] (XNOR), -1 otherwise.
        acc = Signal(yhat_layout)
        nxt = Signal(yhat_layout)
        payload = self.i.payload
        for c in range(classes):
            match = ~(payload.act ^ payload.row[c])
            m.d.comb += nxt[c].eq(acc[c] + Mux(match, 1, -1))
        with m.If(take):
            with m.If(payload.last):
                m.d.sync += acc.eq(0)
            with m.Else():
                m.d.sync += acc.eq(nxt)
        with m.If(s1_free):
            m.d.sync += [
                s1_valid.eq(take & payload.last),
                s1_yhat.eq(nxt),
                s1_label.eq(payload.label),
                s1_r.eq(self.robustness),
            ]

        # Argmax / top-2 tournament tree.
        top1, index, top2 = _top2_tree(m, [s1_yhat[c] for c in range(classes)])
        with m.If(s2_free):
            m.d.sync += [
                s2_valid.eq(s1_valid),
                s2_yhat.eq(s1_yhat),
                s2_label.eq(s1_label),
                s2_r.eq(s1_r),
                s2_pred.eq(index),
                s2_top1.eq(top1),
                s2_top2.eq(top2),
            ]

        # Margin and the error decision.
        margin = Signal(self.margin_bits)
        m.d.comb += margin.eq(s2_top1 - s2_top2)
        with m.If(o_free):
            m.d.sync += [
                self.o.valid.eq(s2_valid),
                self.o.payload.yhat.eq(s2_yhat),
                self.o.payload.pred.eq(s2_pred),
                self.o.payload.margin.eq(margin),
                self.o.payload.update.eq((s2_pred != s2_label) | (margin < s2_r)),
            ]
        return m
