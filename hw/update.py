"""Metaplastic update engine: saturating increment/decrement of packed hidden weights.

The engine is the read-modify-write datapath of the CP+R update. The
sequencer streams words of ``lanes`` hidden weights through it (read from the
weight memory) and writes back the updated word together with its packed sign
bits ``W``, so ``W`` never goes stale. Per word, one of three operations:

* CP step (:func:`xnorlearn.sw.golden.literal.cp_step`):
  ``h += 2 * a * rho``, i.e. ``+2`` where the activation bit equals ``rho``,
  ``-2`` elsewhere;
* reinforcement (:func:`xnorlearn.sw.golden.literal.reinforce_step`):
  ``h += 2 * sign(h)`` (``sign(0) = -1``, as the golden model) where the lane's
  ``hit`` bit is set (its draw was below the threshold);
* pass-through.

Results saturate at ``±h_max``, ``h_max = 2**(h_bits-1) - 1``.

The reinforcement decisions come in on the stream (``hit`` field, a bit per lane),
normally from a :class:`xnorlearn.hw.sweep.ReinforceSweep`, which compares each draw
with the threshold as it is made, so the engine holds no random state, the number
of hash units can be chosen apart from the number of update lanes, and a word's
operands are a bit per lane rather than a 16-bit draw.
"""

from amaranth import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from xnorlearn.sw.golden.prng import DRAW_BITS
from xnorlearn.hw.prng import _check_int, _check_tag_shape, _stall_pipeline, _with_tag

__all__ = ["UpdateOp", "UpdateEngine", "update_input_layout", "update_output_layout"]

THRESHOLD_BITS = DRAW_BITS + 1  # 0 .. DRAW_ONE inclusive


class UpdateOp(enum.Enum, shape=2):
    """Operation applied to one word; the unused encoding 3 passes the word through."""
    PASS = 0
    CP = 1
    REINFORCE = 2


def update_input_layout(*, lanes, h_bits=8, tag_shape=None):
    """Layout of :class:`UpdateEngine`'s ``i`` payload (for software that packs words)."""
    return _with_tag({
        "op": UpdateOp,
        "h": data.ArrayLayout(signed(h_bits), lanes),
        "a": unsigned(lanes),
        "rho": unsigned(1),
        "mask": unsigned(lanes),
        "hit": unsigned(lanes),
    }, tag_shape)


def update_output_layout(*, lanes, h_bits=8, tag_shape=None):
    """Layout of :class:`UpdateEngine`'s ``o`` payload."""
    return _with_tag({"h": data.ArrayLayout(signed(h_bits), lanes), "w": unsigned(lanes)},
                     tag_shape)


class UpdateEngine(wiring.Component):
    """Saturating CP / reinforcement update of ``lanes`` hidden weights per cycle.

    For each input word the engine returns the updated hidden weights ``h``
    and their packed signs ``w`` (bit ``n`` is 1 when ``h[n] > 0``, i.e. the
    binary weight is +1). Lanes whose ``mask`` bit is 0 (the padding of a
    partial last word) are returned unchanged, and their ``w`` bits are their
    signs too, so that ``W = sign(H)`` holds for every lane of the word. Any ``h`` in the signed ``h_bits`` range is
    accepted (the golden functions are matched for even values and ``-2**(h_bits-1)``
    too), though training only ever stores odd values within ``±h_max``.

    Parameters
    ----------
    lanes : int
        Hidden weights per word, 8..1024.
    h_bits : int
        Bits of a signed hidden weight, 2..16 (default 8); ``h_max = 2**(h_bits-1) - 1``.
    tag_shape : shape-like or None
        Shape of an opaque ``tag`` carried from input to output (for example
        the write-back address); ``None`` (the default) for no ``tag`` field.

    Attributes
    ----------
    lanes, h_bits, tag_shape
        The parameters (read only).
    h_max : int
        Saturation bound ``2**(h_bits-1) - 1``.
    latency : int
        2: the input word and the output word are registered. Throughput: one word
        per cycle.

    Members
    -------
    i : ``In(stream.Signature(update_input_layout(lanes=lanes, h_bits=h_bits, tag_shape=tag_shape)))``
        Words to update, fields:

        ``op`` : :class:`UpdateOp`
            What to do with the word.
        ``h`` : ``ArrayLayout(signed(h_bits), lanes)``
            Hidden weights.
        ``a`` : ``unsigned(lanes)``
            Packed input activations of the CP step (bit 1 = +1).
        ``rho`` : ``unsigned(1)``
            Sign of the CP step for the whole word (1 = +1).
        ``mask`` : ``unsigned(lanes)``
            Lanes to update; 0 leaves a lane untouched.
        ``hit`` : ``unsigned(lanes)``
            Lanes a reinforcement step reinforces (their draws were below the
            threshold).
        ``tag`` : ``tag_shape``
            Passed through (only if ``tag_shape`` is not ``None``).
    o : ``Out(stream.Signature(update_output_layout(lanes=lanes, h_bits=h_bits, tag_shape=tag_shape)))``
        Updated words in order, fields ``h`` (as above), ``w`` (``unsigned(lanes)``,
        packed signs) and ``tag``.

    Raises
    ------
    TypeError
        If a parameter has the wrong type.
    ValueError
        If a parameter is out of range.
    """

    def __init__(self, *, lanes, h_bits=8, tag_shape=None):
        self._lanes = _check_int("lanes", lanes, 8, 1024)
        self._h_bits = _check_int("h_bits", h_bits, 2, 16)
        self._tag_shape = _check_tag_shape(tag_shape)
        self._input_layout = update_input_layout(lanes=lanes, h_bits=h_bits,
                                                 tag_shape=self._tag_shape)
        self._output_layout = update_output_layout(lanes=lanes, h_bits=h_bits,
                                                   tag_shape=self._tag_shape)
        super().__init__({
            "i": In(stream.Signature(self._input_layout)),
            "o": Out(stream.Signature(self._output_layout)),
        })

    @property
    def lanes(self):
        return self._lanes

    @property
    def h_bits(self):
        return self._h_bits

    @property
    def tag_shape(self):
        return self._tag_shape

    @property
    def h_max(self):
        return (1 << (self._h_bits - 1)) - 1

    @property
    def latency(self):
        return 2

    @property
    def input_layout(self):
        """Layout of the ``i`` payload."""
        return self._input_layout

    @property
    def output_layout(self):
        """Layout of the ``o`` payload."""
        return self._output_layout

    def elaborate(self, platform):
        m = Module()
        out = self.o.payload
        h_max = self.h_max
        en_in, en = _stall_pipeline(m, 2, self.i, self.o, prefix="upd")
        # The input word is registered: it comes straight from block RAM outputs. Each
        # field in its own register: lanes slice plain signals, which keeps elaboration
        # time linear in the lane count.
        ilay = self._input_layout
        p_op = Signal(UpdateOp, reset_less=True)
        h_in = Signal(ilay["h"].shape, name="in_h", reset_less=True)
        a = Signal(ilay["a"].shape, name="in_a", reset_less=True)
        mask = Signal(ilay["mask"].shape, name="in_mask", reset_less=True)
        rho = Signal(name="in_rho", reset_less=True)
        hit = Signal(self._lanes, name="in_hit", reset_less=True)
        # Data registers load only valid words: between the words the engine's lanes then
        # see no new operands (in simulation the idle engine costs nothing).
        loaded = Signal()
        with m.If(en_in):
            m.d.sync += loaded.eq(self.i.valid)
        with m.If(en_in & self.i.valid):
            m.d.sync += [p_op.eq(self.i.payload.op), h_in.eq(self.i.payload.h),
                         a.eq(self.i.payload.a), mask.eq(self.i.payload.mask),
                         rho.eq(self.i.payload.rho), hit.eq(self.i.payload.hit)]

        is_cp = Signal()
        is_reinforce = Signal()
        m.d.comb += [is_cp.eq(p_op == UpdateOp.CP), is_reinforce.eq(p_op == UpdateOp.REINFORCE)]
        # Output registers without reset (only the valid bit needs one): per lane, its
        # weight and sign in one register, decided by one chain of conditions on the
        # input register (no shared intermediate signals), so that a simulator evaluates
        # a lane only when a word is loaded. For timing, saturation and the sign of the
        # result are decided from `h` alone, next to the adder rather than after it:
        # `h + 2 > h_max` is `h > h_max - 2`, `h - 2 < -h_max` is `h < 2 - h_max`.
        lane_h, lane_w = [], []
        with m.If(en & loaded):
            for n in range(self._lanes):
                h = h_in[n]
                lane = Signal(data.StructLayout({"h": signed(self._h_bits), "w": 1}),
                              name=f"o_lane{n}", reset_less=True)
                with m.If(~(mask[n] & (is_cp | (is_reinforce & hit[n])))):
                    m.d.sync += [lane.h.eq(h), lane.w.eq(h > 0)]
                with m.Elif(Mux(is_cp, ~(a[n] ^ rho), h > 0)):
                    with m.If(h > h_max - 2):
                        m.d.sync += [lane.h.eq(h_max), lane.w.eq(1)]
                    with m.Else():
                        m.d.sync += [lane.h.eq(h + 2), lane.w.eq(h > -2)]
                with m.Else():
                    with m.If(h < 2 - h_max):
                        m.d.sync += [lane.h.eq(-h_max), lane.w.eq(0)]
                    with m.Else():
                        m.d.sync += [lane.h.eq(h - 2), lane.w.eq(h > 2)]
                lane_h.append(lane.h)
                lane_w.append(lane.w)
        o_h, o_w = Cat(*lane_h), Cat(*lane_w)
        m.d.comb += [out.h.as_value().eq(o_h), out.w.eq(o_w)]
        if self._tag_shape is not None:
            p_tag = Signal(self._tag_shape, reset_less=True)
            with m.If(en_in & self.i.valid):
                m.d.sync += p_tag.eq(self.i.payload.tag)
            o_tag = Signal(self._tag_shape, reset_less=True)
            with m.If(en & loaded):
                m.d.sync += o_tag.eq(p_tag)
            m.d.comb += out.tag.eq(o_tag)
        return m
