"""XNOR-popcount array: exact pre-activations ``z = 2 * popcount(XNOR(a, w)) - K``."""

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for, ceil_log2
from xnorlearn.hw._params import check_int as _check_int

__all__ = ["XnorPopcount"]




class XnorPopcount(wiring.Component):
    """XNOR lanes feeding a pipelined adder tree and a per-vector accumulator.

    A ±1 vector of length ``K`` arrives as ``ceil(K / lanes)`` words, packed
    little-endian (element ``i`` in word ``i // lanes``, bit ``i % lanes``; bit 1
    means +1). For each vector the unit returns the exact pre-activation
    ``z = sum_i a_i * w_i = 2 * popcount(XNOR(a, w)) - K`` and the same value
    saturated to ``±(2**(z_bits-1) - 1)``, as :func:`xnorlearn.sw.golden.literal.preactivation`
    and :func:`~xnorlearn.sw.golden.literal.saturate` define them.

    The adder tree has ``ceil_log2(lanes)`` levels of two-input adders, with a
    register after every ``levels_per_stage`` levels (``tree_stages`` registers
    in all), so the depth grows with the logarithm of ``lanes`` and the logic
    between registers stays a few small adders deep. The input word is registered
    before the XNOR, so that the unit can be fed straight from block RAM outputs and
    their multiplexers. One word is accepted per
    cycle. The tree itself never stalls: results queue in an output FIFO of
    ``latency + 1`` entries, and a word ending a vector is only accepted while a
    FIFO entry is reserved for it, so backpressure on ``o`` never loses or
    duplicates a result and ``i.ready`` does not depend combinationally on
    ``o.ready``. With ``o.ready`` held high the throughput is one word per cycle.

    Parameters
    ----------
    lanes : int
        Bits per word, 8..1024 (need not be a power of two).
    max_fan_in : int
        Largest vector length ``K`` (1..2**24) the unit must handle; sets the
        width of the accumulator and of ``z``. Longer vectors give wrapped,
        meaningless results.
    z_bits : int or None
        Width of the saturated output ``z_sat`` (2..32); ``None`` makes
        ``z_sat`` equal to ``z``.
    levels_per_stage : int
        Adder-tree levels between two pipeline registers (1..10, default 3).

    Members
    -------
    i : ``In(stream.Signature(word_layout))``
        Input words. Payload fields: ``a`` and ``w`` (``lanes`` bits each, the
        activation and weight bits), ``count`` (number of valid low bits of this
        word, 0..lanes; bits at and above ``count`` are ignored; larger values
        are not allowed), ``last`` (this word ends the vector).
    o : ``Out(stream.Signature(result_layout))``
        One result per vector, in order. Payload fields: ``z`` (signed,
        ``z_width`` bits, exact) and ``z_sat`` (signed, ``z_bits`` bits, or ``z``'s
        shape when ``z_bits`` is None).

    Attributes
    ----------
    lanes, max_fan_in, z_bits, levels_per_stage : int or None
        The parameters.
    z_width : int
        Width of the signed ``z`` (enough for ``-max_fan_in..max_fan_in``).
    z_max : int or None
        Saturation bound ``2**(z_bits-1) - 1`` (None when ``z_bits`` is None).
    tree_stages : int
        Pipeline registers in the adder tree.
    latency : int
        Cycles from the handshake of a vector's last word to ``o.valid`` (when
        the FIFO is empty).
    word_layout, result_layout : amaranth.lib.data.StructLayout
        Payload layouts of ``i`` and ``o``.

    Raises
    ------
    TypeError
        If a parameter is not an integer (or None for ``z_bits``).
    ValueError
        If a parameter is out of its range.
    """

    def __init__(self, *, lanes, max_fan_in, z_bits=None, levels_per_stage=3):
        _check_int("lanes", lanes, 8, 1024)
        _check_int("max_fan_in", max_fan_in, 1, 2**24)
        if z_bits is not None:
            _check_int("z_bits", z_bits, 2, 32)
        _check_int("levels_per_stage", levels_per_stage, 1, 10)
        self._lanes = lanes
        self._max_fan_in = max_fan_in
        self._z_bits = z_bits
        self._levels_per_stage = levels_per_stage

        self._z_width = bits_for(max_fan_in) + 1
        z_sat_shape = signed(self._z_width if z_bits is None else z_bits)
        self._word_layout = data.StructLayout({
            "a": unsigned(lanes),
            "w": unsigned(lanes),
            "count": unsigned(bits_for(lanes)),
            "last": unsigned(1),
        })
        self._result_layout = data.StructLayout({
            "z": signed(self._z_width),
            "z_sat": z_sat_shape,
        })
        levels = ceil_log2(lanes)
        self._tree_stages = -(-levels // levels_per_stage)
        # Registers after the handshake: input word, tree stages, accumulator, FIFO entry.
        self._latency = self._tree_stages + 3
        super().__init__({
            "i": In(stream.Signature(self._word_layout)),
            "o": Out(stream.Signature(self._result_layout)),
        })

    lanes = property(lambda self: self._lanes)
    max_fan_in = property(lambda self: self._max_fan_in)
    z_bits = property(lambda self: self._z_bits)
    levels_per_stage = property(lambda self: self._levels_per_stage)
    z_width = property(lambda self: self._z_width)
    tree_stages = property(lambda self: self._tree_stages)
    latency = property(lambda self: self._latency)
    word_layout = property(lambda self: self._word_layout)
    result_layout = property(lambda self: self._result_layout)

    @property
    def z_max(self):
        return None if self._z_bits is None else 2 ** (self._z_bits - 1) - 1

    def _stage_levels(self):
        """Adder levels per tree stage; the first stage, which also has the XNOR
        and the mask, gets the fewest."""
        levels = ceil_log2(self._lanes)
        base, extra = divmod(levels, self._tree_stages)
        return [base + (s >= self._tree_stages - extra) for s in range(self._tree_stages)]

    def elaborate(self, platform):
        m = Module()
        lanes = self._lanes
        fifo_depth = self._latency + 1

        # Output FIFO and the credits that keep it from overflowing: `pending`
        # counts vectors whose last word was accepted and whose result is not yet
        # read, so it bounds what the FIFO will ever hold.
        m.submodules.fifo = fifo = SyncFIFO(width=self._result_layout.size, depth=fifo_depth)
        pending = Signal(range(fifo_depth + 1))
        m.d.comb += self.i.ready.eq(pending < fifo_depth)
        accept = self.i.valid & self.i.ready
        retire = self.o.valid & self.o.ready
        m.d.sync += pending.eq(pending + (accept & self.i.payload.last) - retire)

        m.d.comb += [
            self.o.valid.eq(fifo.r_rdy),
            self.o.payload.eq(fifo.r_data),
            fifo.r_en.eq(self.o.ready),
        ]

        # Input register; only the valid bit needs a reset.
        word = Signal(self._word_layout, reset_less=True)
        in_valid = Signal()
        m.d.sync += [word.eq(self.i.payload), in_valid.eq(accept)]

        # Adder tree. Stage 0 input: the masked XNOR bits of the incoming word.
        # Lanes at and above `count` are masked off (bit k of `mask` is k < count).
        mask = Signal(lanes)
        m.d.comb += mask.eq(Cat(word.count > k for k in range(lanes)))
        match = Signal(lanes)
        m.d.comb += match.eq(~(word.a ^ word.w) & mask)
        # One signal per lane: slicing the wide `match` a thousand times makes
        # elaboration quadratic in `lanes`.
        terms = [Signal(name=f"match{k}") for k in range(lanes)]
        m.d.comb += Cat(terms).eq(match)
        valid, count, last = in_valid, word.count, word.last
        for s, levels in enumerate(self._stage_levels()):
            for _ in range(levels):
                terms = [terms[k] + terms[k + 1] if k + 1 < len(terms) else terms[k]
                         for k in range(0, len(terms), 2)]
            # Only the valid bits need a reset; leaving it off the wide data
            # registers saves routing on an FPGA.
            regs = [Signal(t.shape(), name=f"s{s}_sum{k}", reset_less=True)
                    for k, t in enumerate(terms)]
            s_valid = Signal(name=f"s{s}_valid")
            s_count = Signal.like(count, name=f"s{s}_count", reset_less=True)
            s_last = Signal(name=f"s{s}_last", reset_less=True)
            m.d.sync += [r.eq(t) for r, t in zip(regs, terms)]
            m.d.sync += [s_valid.eq(valid), s_count.eq(count), s_last.eq(last)]
            terms, valid, count, last = regs, s_valid, s_count, s_last
        (matches,) = terms

        # Accumulator: z of the vector so far. On the last word the total goes
        # to `result` and the accumulator restarts.
        z_shape = signed(self._z_width)
        acc = Signal(z_shape)
        total = Signal(z_shape)
        m.d.comb += total.eq(acc + (matches << 1) - count)
        result = Signal(z_shape, reset_less=True)
        result_valid = Signal()
        m.d.sync += result_valid.eq(valid & last)
        with m.If(valid):
            m.d.sync += acc.eq(Mux(last, 0, total))
            with m.If(last):
                m.d.sync += result.eq(total)

        out = Signal(self._result_layout)
        m.d.comb += out.z.eq(result)
        if self._z_bits is None:
            m.d.comb += out.z_sat.eq(result)
        else:
            bound = self.z_max
            m.d.comb += out.z_sat.eq(Mux(result > bound, bound,
                                         Mux(result < -bound, -bound, result)))
        m.d.comb += [
            fifo.w_en.eq(result_valid),
            fifo.w_data.eq(out),
        ]
        return m
