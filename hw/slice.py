"""A register slice for streams: every output and ``ready`` come from flip-flops."""

from amaranth.hdl import Module, Shape, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["RegisterSlice"]


class RegisterSlice(wiring.Component):
    """Two-entry stream buffer that cuts every combinational path through it.

    ``o.valid``, ``o.payload`` and ``i.ready`` are register outputs, so neither the
    payload nor the handshake of one side reaches the other side's logic in the same
    cycle. A word is accepted whenever the slice is not full; when ``o`` stalls, the
    word behind the output register waits in a second ("skid") register. The slice
    adds one cycle of latency; a stream flowing without stalls keeps one word per
    cycle, and each stall costs at most one cycle of ``i.ready`` after it ends.

    Parameters
    ----------
    shape : shape-like
        The payload (a plain shape or a ``data`` layout).

    Members
    -------
    i : ``In(stream.Signature(shape))``
        Words in.
    o : ``Out(stream.Signature(shape))``
        The same words, in order, one cycle or more later.
    flush : ``In(1)``
        Drops the words held (for a soft reset), taking effect at the next clock edge.

    Raises
    ------
    TypeError
        If ``shape`` is not shape-castable.
    """

    def __init__(self, *, shape):
        try:
            Shape.cast(shape)
        except TypeError:
            raise TypeError(f"shape must be a shape-castable object, got {shape!r}") from None
        self._shape = shape
        super().__init__({
            "i": In(stream.Signature(shape)),
            "o": Out(stream.Signature(shape)),
            "flush": In(1),
        })

    shape = property(lambda self: self._shape)

    def elaborate(self, platform):
        m = Module()
        skid_valid = Signal()
        skid = Signal(self._shape, reset_less=True)
        m.d.comb += self.i.ready.eq(~skid_valid)
        accept = self.i.valid & ~skid_valid
        with m.If(~self.o.valid | self.o.ready):
            with m.If(skid_valid):
                m.d.sync += [self.o.payload.eq(skid), self.o.valid.eq(1), skid_valid.eq(0)]
            with m.Else():
                m.d.sync += [self.o.payload.eq(self.i.payload), self.o.valid.eq(self.i.valid)]
        with m.Elif(accept):
            m.d.sync += [skid.eq(self.i.payload), skid_valid.eq(1)]
        with m.If(self.flush):
            m.d.sync += [self.o.valid.eq(0), skid_valid.eq(0)]
        return m
