"""Local classifier of one layer: class scores, argmax / top-2 margin and the error decision."""

from amaranth import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from xnorlearn.hw._params import check_int as _check_int

__all__ = ["LocalClassifier"]

MAX_CLASSES = 16
MAX_WIDTH = 1 << 20




def _top2_merge(m, a, b, name):
    """One node of the argmax / top-2 tournament tree, as combinational signals.

    ``a`` and ``b`` are ``(top1, index, top2)`` of a lower-index and a higher-index group;
    ``b`` wins only when strictly greater, which keeps ties on the lowest index. The three
    comparisons are independent, so a node is one comparator and two multiplexers deep.
    """
    (a1, ai, a2), (b1, bi, b2) = a, b
    top1 = Signal.like(a1, name=f"{name}_top1")
    index = Signal.like(ai, name=f"{name}_index")
    top2 = Signal.like(a1, name=f"{name}_top2")
    b_wins = b1 > a1
    m.d.comb += [
        top1.eq(Mux(b_wins, b1, a1)),
        index.eq(Mux(b_wins, bi, ai)),
        top2.eq(Mux(b_wins, Mux(a1 > b2, a1, b2), Mux(b1 > a2, b1, a2))),
    ]
    return top1, index, top2


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
    the argmax / top-2 search is a tournament tree of ``tree_levels = ceil(log2(classes))``
    levels (4 for 10 or 16 classes, 3 parallel comparators per node) with a register after
    each level, so that no path holds more than one comparator and two multiplexers.
    Latency ``tree_levels + 2`` cycles (accumulate -> tree levels -> margin and decision):
    the result can be taken on that clock edge after the one that accepts the ``last``
    item. Up to ``tree_levels + 2`` patterns are in flight, so a stream of one-neuron
    patterns still runs at one pattern per cycle; ``i.ready`` falls only when the output
    is stalled and the pipeline is full.

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
    def tree_levels(self):
        """Levels (and register stages) of the argmax / top-2 tree: ``ceil(log2(classes))``."""
        return (self._classes - 1).bit_length()

    @property
    def latency(self):
        """Clock edges from accepting a pattern's ``last`` item to its result: ``tree_levels + 2``."""
        return self.tree_levels + 2

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
        # Stage 1 holds the scores, stages 2.. one level of the tournament tree each. Only
        # the valid bits (and the accumulator) are reset: in a wide core the lanes' reset
        # is one net, and every flip-flop on it is one more load across the device.
        idx_shape = unsigned(max(1, (classes - 1).bit_length()))
        floor = Const(-(1 << (score.width - 1)), score)
        levels = self.tree_levels
        stages = []
        for s in range(1, levels + 2):
            stages.append({
                "valid": Signal(name=f"s{s}_valid"),
                "yhat": Signal(yhat_layout, name=f"s{s}_yhat", reset_less=True),
                "label": Signal(self.label_bits, name=f"s{s}_label", reset_less=True),
                "r": Signal(r_shape, name=f"s{s}_r", reset_less=True),
            })
        o_free = ~self.o.valid | self.o.ready
        free = o_free
        for st in reversed(stages):
            st["free"] = ~st["valid"] | free
            free = st["free"]
        s1 = stages[0]
        m.d.comb += self.i.ready.eq(s1["free"])
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
        with m.If(s1["free"]):
            m.d.sync += [
                s1["valid"].eq(take & payload.last),
                s1["yhat"].eq(nxt),
                s1["label"].eq(payload.label),
                s1["r"].eq(self.robustness),
            ]

        # Argmax / top-2 tournament tree over the scores (lowest index first), one level per
        # stage. A leaf has no second value: it gets the most negative code of the shape,
        # which no real score reaches.
        nodes = [(s1["yhat"][c], Const(c, idx_shape), floor) for c in range(classes)]
        for level, (prev, st) in enumerate(zip(stages, stages[1:])):
            merged = [_top2_merge(m, nodes[n], nodes[n + 1], f"l{level}_n{n // 2}")
                      for n in range(0, len(nodes) - 1, 2)]
            if len(nodes) % 2:
                merged.append(nodes[-1])
            registered = [tuple(Signal.like(v, name=f"s{level + 2}_n{n}_{part}", reset_less=True)
                                for v, part in zip(node, ("top1", "index", "top2")))
                          for n, node in enumerate(merged)]
            with m.If(st["free"]):
                m.d.sync += [
                    st["valid"].eq(prev["valid"]),
                    st["yhat"].eq(prev["yhat"]),
                    st["label"].eq(prev["label"]),
                    st["r"].eq(prev["r"]),
                ]
                m.d.sync += [r.eq(v) for reg, node in zip(registered, merged)
                             for r, v in zip(reg, node)]
            nodes = registered
        ((s2_top1, s2_pred, s2_top2),) = nodes
        last = stages[-1]
        s2_valid, s2_yhat, s2_label, s2_r = last["valid"], last["yhat"], last["label"], last["r"]

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
