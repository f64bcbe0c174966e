"""Layer configuration: the per-layer layout and limits the training core derives from its
configuration registers, and the values of the layer each of its two sequencers works on.
"""

from amaranth import Array, Cat, Module, Signal, Value
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for, exact_log2

from xnorlearn.hw._arith import adder_tree, divmod_const, shifted_terms
from xnorlearn.hw._params import check_draw_lanes, check_lanes
from xnorlearn.hw._params import check_int as _check_int
from xnorlearn.hw.update import THRESHOLD_BITS

__all__ = ["LayerConfig", "layer_shapes"]


def layer_shapes(*, lanes, max_words, width_bits=None, draw_lanes=None):
    """Shapes of the per-layer values :class:`LayerConfig` selects, for the components
    that take them, so that they connect without truncation: ``words`` (words per
    neuron, up to ``max_words``), ``words_m1``, ``last`` (weights of a neuron's last
    word), with ``width_bits`` also ``kin``, ``kout_m1`` and ``hw_m1``, and with
    ``draw_lanes`` also ``chunks_m1``. The ``_m1`` values are signed: -1 for an empty layer.
    """
    n = Signal(range(max_words + 2))
    last = Signal(range(lanes + 1))
    shapes = {"words": n.shape(), "words_m1": (n - 1).shape(), "last": last.shape()}
    if width_bits is not None:
        k = Signal(width_bits)
        shapes.update(kin=k.shape(), kout_m1=(k - 1).shape(),
                      hw_m1=(((k + 3) >> 2) - 1).shape())
    if draw_lanes is not None:
        shapes["chunks_m1"] = (((last + draw_lanes - 1) >> exact_log2(draw_lanes)) - 1).shape()
    return shapes


class LayerConfig(wiring.Component):
    """Per-layer layout, checks and per-sequencer layer values of the training core.

    From the configuration ports (``layers``, ``width[0]`` = the fan-in of layer 0,
    ``width[l + 1]`` = the width of layer ``l``, and the per-layer ``gamma``,
    ``robust``, ``thresh``, ``key``) it derives, for every layer ``l``, the memory words
    per neuron ``ceil(K_(l-1) / lanes)``, the lanes of a neuron's last word and the layer's
    first weight word (``base``, the layers packed from word 0), and whether the
    configuration fits the build (``ok``). The values are registered in steps (words per
    neuron, their product with the width through a two-cycle adder tree, one layer base per
    cycle): they are valid :attr:`latency` cycles after the ports change.

    The forward pass and the updates each select one layer through an index port
    (``fwd_layer``, ``upd_layer``: the *next* value of the sequencer's layer register), and
    get that layer's values, registered, in ``fwd`` and ``upd`` in the cycle the register
    takes the index: what is selected by layer stays out of the cycles that use it.

    Parameters
    ----------
    lanes : int
        XNOR lanes, a power of two in 32..1024 (bits of a weight memory word).
    max_layers : int
        1..8.
    width_bits : int
        Bits of a ``width`` and ``gamma`` entry, 1..16.
    margin_bits : int
        Bits of a ``robust`` entry, 1..16.
    max_width, max_fan_in, max_groups, weight_words : int
        The build's limits that ``ok`` checks (1..4095, 1..4095, 1..64, 1..2**20).
    draw_lanes : int
        Reinforcement draws per cycle, a power of two dividing ``lanes``
        (for ``upd.chunks_m1``).

    Members
    -------
    layers : ``In(unsigned(bits_for(max_layers)))``
    width : ``In(data.ArrayLayout(unsigned(width_bits), max_layers + 1))``
    gamma : ``In(data.ArrayLayout(unsigned(width_bits), max_layers))``
    robust : ``In(data.ArrayLayout(unsigned(margin_bits), max_layers))``
    thresh : ``In(data.ArrayLayout(unsigned(17), max_layers))``
    key : ``In(data.ArrayLayout(unsigned(32), max_layers))``
        The configuration registers.
    fwd_layer : ``In(range(max_layers))``
    upd_layer : ``In(range(max_layers + 1))``
        The layer of the forward pass and of the updates (``max_layers``: none).
    ok : ``Out(1)``
        The configuration fits the build: ``1 <= layers <= max_layers``, ``1 <= width[0]
        <= max_fan_in``, the layers' weights within ``weight_words``, and for every active
        layer ``1 <= K <= max_width``, ``1 <= gamma <= K``, ``K <= gamma * max_groups``.
    bases : ``Out(data.ArrayLayout(unsigned(32), max_layers))``
        First weight word of each layer.
    fwd : ``Out(data.StructLayout)``
        The forward layer's ``last`` (lanes of a neuron's last word), ``base``, ``kin``
        (fan-in), ``robust``, ``gamma``, ``words_m1`` (words per neuron - 1), ``kout_m1``
        (width - 1), ``hw_m1`` (host words per neuron for ``WRITE_H``, ``ceil(kin / 4)``,
        - 1; the ``_m1`` fields signed, -1 for an empty layer) and ``is_last`` (it is the
        last layer).
    upd : ``Out(data.StructLayout)``
        The update layer's ``words``, ``last``, ``base``, ``kin``, ``words_m1``,
        ``kout_m1``, ``chunks_m1`` (draw requests of a neuron's last word - 1),
        ``thresh`` and ``key``.

    Raises
    ------
    TypeError
        If a parameter is not an integer.
    ValueError
        If a parameter is out of range.
    """

    def __init__(self, *, lanes, max_layers, width_bits, margin_bits, max_width, max_fan_in,
                 max_groups, weight_words, draw_lanes):
        self._lanes = check_lanes(lanes)
        self._max_layers = _check_int("max_layers", max_layers, 1, 8)
        self._width_bits = _check_int("width_bits", width_bits, 1, 16)
        self._margin_bits = _check_int("margin_bits", margin_bits, 1, 16)
        self._max_width = _check_int("max_width", max_width, 1, 4095)
        self._max_fan_in = _check_int("max_fan_in", max_fan_in, 1, 4095)
        self._max_groups = _check_int("max_groups", max_groups, 1, 64)
        self._weight_words = _check_int("weight_words", weight_words, 1, 1 << 20)
        self._draw_lanes = check_draw_lanes(draw_lanes, lanes)
        ml, wb = max_layers, width_bits
        # Words per neuron (the widest of a fan-in and a width, in lanes), plus one.
        words_per_neuron = max(-(-max_fan_in // lanes), -(-max_width // lanes))
        s = layer_shapes(lanes=lanes, max_words=words_per_neuron, width_bits=wb,
                         draw_lanes=draw_lanes)
        fwd = {"last": s["last"], "base": 32, "kin": s["kin"], "robust": margin_bits,
               "gamma": wb, "words_m1": s["words_m1"], "kout_m1": s["kout_m1"],
               "hw_m1": s["hw_m1"], "is_last": 1}
        upd = {"words": s["words"], "last": s["last"], "base": 32, "kin": s["kin"],
               "words_m1": s["words_m1"], "kout_m1": s["kout_m1"],
               "chunks_m1": s["chunks_m1"], "thresh": THRESHOLD_BITS, "key": 32}
        super().__init__({
            "layers": In(bits_for(ml)),
            "width": In(data.ArrayLayout(wb, ml + 1)),
            "gamma": In(data.ArrayLayout(wb, ml)),
            "robust": In(data.ArrayLayout(margin_bits, ml)),
            "thresh": In(data.ArrayLayout(THRESHOLD_BITS, ml)),
            "key": In(data.ArrayLayout(32, ml)),
            "fwd_layer": In(range(ml)),
            "upd_layer": In(range(ml + 1)),
            "ok": Out(1),
            "bases": Out(data.ArrayLayout(32, ml)),
            "fwd": Out(data.StructLayout(fwd)),
            "upd": Out(data.StructLayout(upd)),
        })

    lanes = property(lambda self: self._lanes)
    max_layers = property(lambda self: self._max_layers)
    width_bits = property(lambda self: self._width_bits)
    margin_bits = property(lambda self: self._margin_bits)
    max_width = property(lambda self: self._max_width)
    max_fan_in = property(lambda self: self._max_fan_in)
    max_groups = property(lambda self: self._max_groups)
    weight_words = property(lambda self: self._weight_words)
    draw_lanes = property(lambda self: self._draw_lanes)

    @property
    def latency(self):
        """Cycles from a change of the configuration ports to ``ok``, ``bases`` and the
        values selected in ``fwd``/``upd`` all following it: words per neuron (1), their
        product (2), one layer base per cycle (``max_layers``), then the selection (1)."""
        return self._max_layers + 4

    def elaborate(self, platform):
        m = Module()
        P, ML, MW = self._lanes, self._max_layers, self._max_width
        # Words per neuron, then their product with the width (a two-level adder tree), then
        # the layer bases, each from registers.
        n_w = [Signal(self.upd.words.shape(), name=f"cfg_words{l}") for l in range(ML)]
        last_count = [Signal(self.fwd.last.shape(), name=f"cfg_last{l}") for l in range(ML)]
        words = [Signal(32, name=f"cfg_layer_words{l}") for l in range(ML)]
        base = [Signal(32, name=f"cfg_base{l}") for l in range(ML + 1)]
        for l in range(ML):
            k = self.width[l]
            width_m = Signal.like(self.width[l + 1], name=f"cfg_width_m{l}")
            # Two cycles whatever the build's widths, so `latency` holds.
            product, _ = adder_tree(m, shifted_terms(width_m, n_w[l], 32), 32,
                                    f"cfg_product{l}", arity=4, latency=2)
            m.d.comb += words[l].eq(product)
            fan_in = self._max_fan_in if l == 0 else MW
            n_words, last_m1 = divmod_const(k + P - 1, P, fan_in + P - 1)
            m.d.sync += [
                n_w[l].eq(n_words),
                width_m.eq(self.width[l + 1]),
                last_count[l].eq(last_m1 + 1),
                base[l + 1].eq(base[l] + words[l]),
            ]
        m.d.comb += self.bases.eq(Cat(*base[:ML]))
        checks = [self.layers >= 1, self.layers <= ML, self.width[0] >= 1,
                  self.width[0] <= self._max_fan_in,
                  Array(base)[self.layers] <= self._weight_words]
        for l in range(ML):
            active = l < self.layers
            checks.append(~active | ((self.width[l + 1] >= 1) & (self.width[l + 1] <= MW)
                                     & (self.gamma[l] >= 1)
                                     & (self.gamma[l] <= self.width[l + 1])
                                     & (self.width[l + 1] <= self.gamma[l] * self._max_groups)))
        m.d.sync += self.ok.eq(Cat(*checks).all())

        def select(field, index, values, fn=None):
            values = [Value.cast(fn(v) if fn else v) for v in values]
            m.d.sync += field.eq(Array(values)[index])

        widths = [self.width[l] for l in range(ML + 1)]
        fwd, upd, fl, ul = self.fwd, self.upd, self.fwd_layer, self.upd_layer
        select(fwd.last, fl, last_count)
        select(fwd.base, fl, base[:ML])
        select(fwd.kin, fl, widths[:ML])
        select(fwd.robust, fl, [self.robust[l] for l in range(ML)])
        select(fwd.gamma, fl, [self.gamma[l] for l in range(ML)])
        select(fwd.words_m1, fl, n_w, lambda v: v - 1)
        select(fwd.kout_m1, fl, widths[1:], lambda v: v - 1)
        select(fwd.hw_m1, fl, widths[:ML], lambda k: ((k + 3) >> 2) - 1)
        m.d.sync += fwd.is_last.eq(fl == self.layers - 1)
        # upd_layer runs to max_layers: the entries past the last layer are never used.
        D = self._draw_lanes
        select(upd.words, ul, n_w)
        select(upd.last, ul, last_count)
        select(upd.base, ul, base[:ML])
        select(upd.kin, ul, widths[:ML])
        select(upd.words_m1, ul, n_w, lambda v: v - 1)
        select(upd.kout_m1, ul, widths[1:], lambda v: v - 1)
        select(upd.chunks_m1, ul, last_count, lambda v: ((v + D - 1) >> exact_log2(D)) - 1)
        select(upd.thresh, ul, [self.thresh[l] for l in range(ML)])
        select(upd.key, ul, [self.key[l] for l in range(ML)])
        return m
