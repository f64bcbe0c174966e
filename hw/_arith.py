"""Constant and small products built from logic: shifted copies of the operand added in a
registered tree, for products that should not go to DSP blocks (those sit in rows of their
own, and the trip to them and back takes most of a cycle)."""

import functools
import operator

from amaranth.hdl import Const, Mux, Signal, Value

__all__ = ["shifted_terms", "adder_tree", "divmod_const"]


def shifted_terms(value, multiplier, width):
    """The terms of ``value * multiplier`` (low ``width`` bits) as shifted copies of
    ``value``: one per set bit of a constant ``multiplier``, or one per bit of a
    ``multiplier`` signal, zero where that bit is clear."""
    value = Value.cast(value)
    if isinstance(multiplier, int):
        return [(value << i)[:width] for i in range(width) if multiplier >> i & 1]
    multiplier = Value.cast(multiplier)
    return [Mux(multiplier[i], (value << i)[:width], 0) for i in range(len(multiplier))
            if i < width]


def adder_tree(m, terms, width, name, *, en=None, arity=3, latency=None):
    """Sum of ``terms`` (low ``width`` bits) through a registered tree: each level adds up
    to ``arity`` values into a register (enabled by ``en`` when given). Returns the sum
    and its latency in cycles: the number of levels, or ``latency`` when given, which
    adds registers after the tree to reach it (and must not be below the levels)."""
    terms = [Value.cast(t) for t in terms] or [Value.cast(0)]
    levels = 0

    def register(value, reg_name):
        r = Signal(width, name=reg_name, reset_less=True)
        if en is None:
            m.d.sync += r.eq(value)
        else:
            with m.If(en):
                m.d.sync += r.eq(value)
        return r

    while levels == 0 or len(terms) > 1:
        terms = [register(functools.reduce(operator.add, terms[i:i + arity])[:width],
                          f"{name}_s{levels}_{i // arity}")
                 for i in range(0, len(terms), arity)]
        levels += 1
    total = terms[0]
    if latency is not None:
        if latency < levels:
            raise ValueError(f"{name}: an adder tree of {levels} levels cannot have "
                             f"latency {latency}")
        for extra in range(latency - levels):
            total = register(total, f"{name}_d{extra}")
        levels = latency
    return total, levels


def divmod_const(value, divisor, max_value):
    """``(value // divisor, value % divisor)`` for a constant ``divisor`` and ``0 <= value
    <= max_value``, as logic: shifts for a power of two, else one comparison with each
    multiple of ``divisor`` up to ``max_value`` and a multiplexer of the remainders (a
    build has few of them: ``max_value / divisor`` is a handful of words)."""
    value = Value.cast(value)
    if divisor < 1:
        raise ValueError(f"divisor must be at least 1, got {divisor}")
    if not divisor & (divisor - 1):
        shift = divisor.bit_length() - 1
        return value >> shift, value[:shift] if shift else Value.cast(0)
    steps = max_value // divisor
    rbits = (divisor - 1).bit_length()
    quotient, remainder = Const(0, range(steps + 1)), value[:rbits]
    for t in range(1, steps + 1):
        above = value >= t * divisor
        quotient = Mux(above, t, quotient)
        remainder = Mux(above, (value - t * divisor)[:rbits], remainder)
    return quotient, remainder
