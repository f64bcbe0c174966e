"""Hardware side of the counter-based PRNG (:mod:`xnorlearn.sw.golden.prng`).

:class:`Mix32` is the pipelined lowbias32 hash, :class:`ReinforceDraws` turns
a sweep key and a start weight index into the 16-bit reinforcement draws of
``lanes`` consecutive hidden weights, one word per cycle. Both are bit-exact
with the golden model.

The sweep key ``reinforce_key(seed, layer, t)`` is computed by the host (it
changes once per layer and minibatch; three scalar hashes in software) and
travels with every request, so requests of different sweeps may follow each
other back to back.

Both components are free-running pipelines with one register per stage and
per-stage clock enables: a stage moves when the stage after it is empty or
moving, so bubbles collapse and nothing is lost or duplicated under
backpressure. Ready therefore depends combinationally on the downstream
ready; valid never depends on ready.
"""

from amaranth import Cat, Const, Module, Mux, Shape, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from xnorlearn.hw._arith import shifted_terms
from xnorlearn.hw._params import check_int as _check_int
from xnorlearn.sw.golden.prng import DRAW_BITS, GOLDEN, MASK32

__all__ = ["Mix32", "ReinforceDraws"]

_M1 = 0x7FEB352D
_M2 = 0x846CA68B




def _check_tag_shape(tag_shape):
    """``None`` or a shape-like of at least one bit (zero-width ports are not valid Verilog)."""
    if tag_shape is None:
        return None
    try:
        width = Shape.cast(tag_shape).width
    except TypeError:
        raise TypeError(f"tag_shape must be None or a shape-like object, not {tag_shape!r}") from None
    if width == 0:
        raise ValueError(f"tag_shape must be None or at least 1 bit wide, got {tag_shape!r}")
    return tag_shape


def _with_tag(fields, tag_shape):
    if tag_shape is not None:
        fields = {**fields, "tag": tag_shape}
    return data.StructLayout(fields)


def _stall_pipeline(m, depth, i, o, *, prefix, loads=False):
    """Valid bits and clock enables of a ``depth``-stage pipeline from stream ``i`` to ``o``.

    Returns the list of enables; the caller registers stage ``k``'s data under
    ``en[k]``. Stage ``depth - 1`` is the output register. With ``loads``, returns
    ``(en, load)`` instead: ``load[k]`` is ``en[k]`` and a valid word entering stage
    ``k``, the enable of data registers that load only valid words (their lanes then see
    no new operands between words, and a simulator skips them).

    The whole pipeline moves or holds as one (every enable is ``~valid[-1] | o.ready``):
    a stalled output also holds the bubbles behind it, but no ready chain runs through
    the stages, which would be ``depth`` logic levels long.
    """
    valid = [Signal(name=f"{prefix}_valid{k}") for k in range(depth)]
    en = [Signal(name=f"{prefix}_en{k}") for k in range(depth)]
    move = Signal(name=f"{prefix}_move")
    m.d.comb += move.eq(~valid[-1] | o.ready)
    m.d.comb += [e.eq(move) for e in en]
    prev = i.valid
    for k in range(depth):
        with m.If(en[k]):
            m.d.sync += valid[k].eq(prev)
        prev = valid[k]
    m.d.comb += [i.ready.eq(en[0]), o.valid.eq(valid[-1])]
    if not loads:
        return en
    load = [Signal(name=f"{prefix}_load{k}") for k in range(depth)]
    m.d.comb += [ld.eq(e & v) for ld, e, v in zip(load, en, [i.valid] + valid[:-1])]
    return en, load


def _mul_const(value, const):
    """Low 32 bits of ``value * const`` (one constant multiplier; DSP blocks)."""
    return (value * const)[:32]


def _mul_parts(value, const):
    """The 16-bit partial products of the low 32 bits of ``value * const``, as one 64-bit
    value: ``xl * cl`` (32 bits), then the low 16 bits of ``xh * cl`` and ``xl * ch``
    (``x = xh * 2**16 + xl``, likewise ``const``). Each is one 18x18 multiplier, and
    registering them keeps the partial products' adders out of the multipliers' cycle:
    synthesis does not move registers into DSP blocks on its own."""
    xl, xh = value[:16], value[16:32]
    cl, ch = const & 0xFFFF, (const >> 16) & 0xFFFF
    return Cat(_bits(xl * cl, 32), _bits(xh * cl, 16), _bits(xl * ch, 16))


def _bits(value, width):
    """``value`` cut or zero-extended to exactly ``width`` bits (a slice past the end of a
    narrower product would be narrower than ``width``)."""
    value = Value.cast(value)
    if len(value) >= width:
        return value[:width]
    return Cat(value, Const(0, width - len(value)))


def _tree_ops(const, arity=3):
    """Stages of the low 32 bits of ``x * const`` built from logic: the shifted copies of
    ``x`` for the set bits of ``const`` (:func:`~xnorlearn.hw._arith.shifted_terms`),
    added ``arity`` at a time, one level of the tree per register stage, the partial sums
    side by side in one value. Returns ``(op, width)`` pairs, as :class:`Mix32` uses."""
    def sums(terms):
        return Cat(*(_bits(sum(terms[j:j + arity]), 32) for j in range(0, len(terms), arity)))

    def level(n):
        return lambda y: sums([y[32 * j:32 * (j + 1)] for j in range(n)])

    n = -(-bin(const & MASK32).count("1") // arity)
    ops = [(lambda x: sums(shifted_terms(x, const, 32)), 32 * n)]
    while n > 1:
        ops.append((level(n), 32 * -(-n // arity)))
        n = -(-n // arity)
    return ops


def _mul_sum(parts):
    """Low 32 bits of the product from :func:`_mul_parts`."""
    return (parts[:32] + ((parts[32:48] + parts[48:64])[:16] << 16))[:32]


class Mix32(wiring.Component):
    """Pipelined lowbias32 hash of ``lanes`` 32-bit words per cycle.

    Computes :func:`xnorlearn.sw.golden.prng.mix32` of every lane::

        x ^= x >> 16;  x *= 0x7FEB352D;  x ^= x >> 15;  x *= 0x846CA68B;  x ^= x >> 16

    (all modulo 2**32). Each xor-shift has its own register stage and each
    constant multiplication takes ``mul_stages`` (a 32x32 low-half product takes
    three 18x18 multipliers): with 1, the product is registered; with 2, the
    three 16-bit partial products, then their sum; with 3, also the operand, in a
    register that feeds only the multipliers; 4 adds a register after the sum.
    Synthesis does not move registers into DSP blocks, so these keep the
    multipliers' trips across the die in cycles of their own. With
    ``soft_multipliers`` the products are built from logic instead: a registered
    tree adding the operand's shifted copies three at a time (three levels for
    either constant), which uses no DSP block and stays among the logic around it.

    Parameters
    ----------
    lanes : int
        Words hashed in parallel, 1..1024.
    mul_stages : int
        Register stages per multiplication, 1..4 (default 2), as above; unused with
        ``soft_multipliers``.
    soft_multipliers : bool
        Build the products from adder trees in logic (default ``False``: DSP blocks).
    tag_shape : shape-like or None
        Shape of an opaque ``tag`` carried from input to output alongside the
        words (``None``, the default: no ``tag`` field).

    Attributes
    ----------
    lanes, mul_stages, tag_shape, soft_multipliers
        The parameters (read only).
    latency : int
        Cycles from an accepted input to its valid output when nothing stalls:
        ``3 + 2 * mul_stages``, or 9 with ``soft_multipliers``. Throughput: one item
        per cycle.

    Members
    -------
    i : ``In(stream.Signature(StructLayout({"x": ArrayLayout(unsigned(32), lanes), "tag": tag_shape})))``
        Words to hash.
    o : ``Out(stream.Signature(StructLayout({"x": ArrayLayout(unsigned(32), lanes), "tag": tag_shape})))``
        Their hashes, in order; ``o.x[n] = mix32(i.x[n])``.

    Raises
    ------
    TypeError
        If a parameter has the wrong type.
    ValueError
        If a parameter is out of range.
    """

    def __init__(self, *, lanes=1, mul_stages=2, tag_shape=None, soft_multipliers=False):
        self._lanes = _check_int("lanes", lanes, 1, 1024)
        self._mul_stages = _check_int("mul_stages", mul_stages, 1, 4)
        if not isinstance(soft_multipliers, bool):
            raise TypeError(f"soft_multipliers must be a bool, not {soft_multipliers!r}")
        self._soft = soft_multipliers
        self._tag_shape = _check_tag_shape(tag_shape)
        layout = _with_tag({"x": data.ArrayLayout(32, lanes)}, self._tag_shape)
        super().__init__({
            "i": In(stream.Signature(layout)),
            "o": Out(stream.Signature(layout)),
        })

    @property
    def lanes(self):
        return self._lanes

    @property
    def mul_stages(self):
        return self._mul_stages

    @property
    def tag_shape(self):
        return self._tag_shape

    @property
    def soft_multipliers(self):
        return self._soft

    @property
    def latency(self):
        if self._soft:
            return 3 + len(_tree_ops(_M1)) + len(_tree_ops(_M2))
        return 3 + 2 * self._mul_stages

    def elaborate(self, platform):
        m = Module()
        copy = (lambda x: x, 32)

        def multiply(const):
            if self._soft:
                return _tree_ops(const)
            # With two or more stages, the partial products get a register of their own;
            # with three or more, the operand too, one that feeds only the multipliers, so
            # that placement can put it beside them.
            if self._mul_stages == 1:
                return [(lambda x: _mul_const(x, const), 32)]
            if self._mul_stages == 2:
                return [(lambda x: _mul_parts(x, const), 64), (_mul_sum, 32)]
            return ([copy, (lambda x: _mul_parts(x, const), 64), (_mul_sum, 32)]
                    + [copy] * (self._mul_stages - 3))

        ops = ([(lambda x: x ^ (x >> 16), 32)] + multiply(_M1)
               + [(lambda x: x ^ (x >> 15), 32)] + multiply(_M2)
               + [(lambda x: x ^ (x >> 16), 32)])
        _, en = _stall_pipeline(m, len(ops), self.i, self.o, prefix="mix", loads=True)
        # Lanes slice plain signals and each stage is assigned as one Cat, which keeps
        # elaboration time linear in the lane count.
        prev = Signal(data.ArrayLayout(32, self._lanes), name="in_x")
        m.d.comb += prev.eq(self.i.payload.x)
        prev_tag = self.i.payload.tag if self._tag_shape is not None else None
        for k, (op, width) in enumerate(ops):
            stage = Signal(data.ArrayLayout(width, self._lanes), name=f"x{k}", reset_less=True)
            with m.If(en[k]):
                m.d.sync += stage.as_value().eq(Cat(*(op(prev[n]) for n in range(self._lanes))))
                if prev_tag is not None:
                    stage_tag = Signal(self._tag_shape, name=f"tag{k}", reset_less=True)
                    m.d.sync += stage_tag.eq(prev_tag)
                    prev_tag = stage_tag
            prev = stage
        m.d.comb += self.o.payload.x.eq(prev)
        if prev_tag is not None:
            m.d.comb += self.o.payload.tag.eq(prev_tag)
        return m


class ReinforceDraws(wiring.Component):
    """Reinforcement draws of ``lanes`` consecutive hidden weights per cycle.

    For each request ``(key, start)`` it returns the 16-bit draws of weights
    ``j = start .. start + lanes - 1`` of the sweep with key ``key``, i.e.
    ``draw[n] == reinforce_draw(seed, layer, t, start + n)`` when ``key ==
    reinforce_key(seed, layer, t)``: weight ``j`` uses ``x = word(key, j >> 1)``
    and takes ``x >> 16`` for even ``j``, ``x & 0xFFFF`` for odd ``j``. A
    sequential sweep sends ``start = j0, j0 + lanes, j0 + 2 * lanes, ...``; any
    start, odd ones included, gives the right draws, and requests are
    independent (random access, different keys back to back).

    The pair counter is multiplied by the Weyl constant once per request
    (``key + (start >> 1) * GOLDEN``), then ``lanes // 2 + 1`` hashers run in
    parallel on consecutive counters; the last one is used only by odd starts.

    Parameters
    ----------
    lanes : int
        Draws per output word, an even number in 2..1024.
    mul_stages : int
        Register stages per multiplication, 1..4 (default 2), as in :class:`Mix32`.
    tag_shape : shape-like or None
        Shape of an opaque ``tag`` carried from request to draws (``None``,
        the default: no ``tag`` field). The update engine's other operands can
        ride here so that the draws and the weights they apply to stay aligned.

    Attributes
    ----------
    lanes, mul_stages, tag_shape
        The parameters (read only).
    latency : int
        Cycles from an accepted request to its valid draws when nothing stalls:
        ``5 + 3 * mul_stages``. Throughput: one word of ``lanes`` draws per cycle.

    Members
    -------
    i : ``In(stream.Signature(StructLayout({"key": unsigned(32), "start": unsigned(32), "tag": tag_shape})))``
        Requests: sweep key (``reinforce_key(seed, layer, t)``, computed by the
        host) and index of the first weight.
    o : ``Out(stream.Signature(StructLayout({"draw": ArrayLayout(unsigned(16), lanes), "tag": tag_shape})))``
        Draws in request order; ``draw[n]`` belongs to weight ``start + n``.

    Raises
    ------
    TypeError
        If a parameter has the wrong type.
    ValueError
        If a parameter is out of range, or ``lanes`` is odd.
    """

    def __init__(self, *, lanes, mul_stages=2, tag_shape=None):
        self._lanes = _check_int("lanes", lanes, 2, 1024)
        if lanes % 2:
            raise ValueError(f"lanes must be even (draws come in pairs), got {lanes}")
        self._mul_stages = _check_int("mul_stages", mul_stages, 1, 4)
        self._tag_shape = _check_tag_shape(tag_shape)
        super().__init__({
            "i": In(stream.Signature(_with_tag({"key": 32, "start": 32}, self._tag_shape))),
            "o": Out(stream.Signature(_with_tag(
                {"draw": data.ArrayLayout(DRAW_BITS, lanes)}, self._tag_shape))),
        })

    @property
    def lanes(self):
        return self._lanes

    @property
    def mul_stages(self):
        return self._mul_stages

    @property
    def tag_shape(self):
        return self._tag_shape

    @property
    def latency(self):
        return self.latency_for(self._mul_stages)

    @staticmethod
    def latency_for(mul_stages):
        """The latency of a :class:`ReinforceDraws` with ``mul_stages``."""
        return (mul_stages + 2) + (3 + 2 * mul_stages)

    def elaborate(self, platform):
        m = Module()
        hashers = self._lanes // 2 + 1
        side = _with_tag({"odd": 1}, self._tag_shape)
        m.submodules.mix = mix = Mix32(lanes=hashers, mul_stages=self._mul_stages, tag_shape=side)

        # Front: base = key + (start >> 1) * GOLDEN, then hasher n gets base + n * GOLDEN.
        front = data.StructLayout({"key": 32, "pair": 31, "parts": 64, "base": 32,
                                   "side": side})
        depth = self._mul_stages + 2
        _, en = _stall_pipeline(m, depth, self.i, mix.i, prefix="front", loads=True)
        stages = [Signal(front, name=f"front{k}", reset_less=True) for k in range(depth)]
        with m.If(en[0]):
            m.d.sync += [
                stages[0].key.eq(self.i.payload.key),
                stages[0].pair.eq(self.i.payload.start[1:]),
                stages[0].side.odd.eq(self.i.payload.start[0]),
            ]
            if self._tag_shape is not None:
                m.d.sync += stages[0].side.tag.eq(self.i.payload.tag)
        for k in range(1, depth):
            with m.If(en[k]):
                m.d.sync += [stages[k].key.eq(stages[k - 1].key),
                             stages[k].side.eq(stages[k - 1].side)]
                if k == 1 and self._mul_stages == 1:
                    m.d.sync += stages[k].base.eq(_mul_const(stages[0].pair, GOLDEN))
                elif k == 1:
                    m.d.sync += stages[k].parts.eq(_mul_parts(stages[0].pair, GOLDEN))
                elif k == 2 and self._mul_stages > 1:
                    m.d.sync += stages[k].base.eq(_mul_sum(stages[k - 1].parts))
                elif k < depth - 1:
                    m.d.sync += stages[k].base.eq(stages[k - 1].base)
                else:
                    m.d.sync += stages[k].base.eq((stages[k - 1].key + stages[k - 1].base)[:32])
        last = stages[-1]
        m.d.comb += mix.i.payload.tag.eq(last.side)
        m.d.comb += mix.i.payload.x.as_value().eq(
            Cat(*((last.base + ((n * GOLDEN) & MASK32))[:32] for n in range(hashers))))

        # Back: weight start + n uses pair (odd + n) >> 1, high half when odd + n is even.
        hashes = Signal(data.ArrayLayout(32, hashers))
        m.d.comb += hashes.eq(mix.o.payload.x)
        odd = mix.o.payload.tag.odd
        draws = []
        for n in range(self._lanes):
            even_draw = _half(hashes[n >> 1], n & 1)
            odd_draw = _half(hashes[(n + 1) >> 1], (n + 1) & 1)
            draws.append(Mux(odd, odd_draw, even_draw))
        m.d.comb += self.o.payload.draw.as_value().eq(Cat(*draws))
        if self._tag_shape is not None:
            m.d.comb += self.o.payload.tag.eq(mix.o.payload.tag.tag)
        m.d.comb += [self.o.valid.eq(mix.o.valid), mix.o.ready.eq(self.o.ready)]
        return m


def _half(x, low):
    return x[:16] if low else x[16:]
