"""Per-group selection of the neuron to update: the negative stability closest to zero."""

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from xnorlearn.hw._params import check_int as _check_int

__all__ = ["GroupSelector"]

MAX_WIDTH = 1 << 20




class GroupSelector(wiring.Component):
    """Group selector of the CP step.

    For one pattern that needs an update, the layer's neurons arrive in order with their
    saturated pre-activation ``z_sat`` and ``rho = P[k][y]``; the stability is
    ``delta_k = z_sat * rho``. For each contiguous group of ``gamma`` neurons the block
    emits the absolute index ``k`` of the negative ``delta_k`` closest to zero (the
    smallest ``|z|`` among the wrong-signed neurons; ties go to the lowest index), or
    ``valid = 0`` when no ``delta_k`` in the group is negative. This is
    :func:`~xnorlearn.sw.golden.literal.select_easiest` in hardware.

    The comparison works on ``|z|``, so ``z = -2**(z_bits-1)`` (outside the saturation
    range ``±(2**(z_bits-1) - 1)``) is still ranked correctly.

    Timing: one input item per cycle, with no gaps between groups or patterns. Latency
    1 cycle: a group's output item is valid right after the clock edge that accepts the
    group's final item, and can be taken on the next edge.
    ``i.ready`` is low only while an output item waits for ``o.ready``.

    Parameters
    ----------
    z_bits : int
        Width of the saturated pre-activation, 2..31.
    max_width : int
        Largest layer width (neurons per pattern), 1..2**20; sets the index width.

    Attributes
    ----------
    gamma : ``In(unsigned(max_width.bit_length()))``
        Group size, a divisor of the layer width. Change it only between patterns. A group
        is also closed by ``last``, so a width that ``gamma`` does not divide ends with a
        short group; ``gamma = 0`` makes each pattern a single group.
    i : ``In(stream.Signature(input_layout))``
        One item per neuron, in neuron order. Payload fields: ``z`` (``signed(z_bits)``,
        ``z_sat``), ``rho`` (``P[k][y]``, 1 = +1), ``last`` (1 on the pattern's final
        neuron; the next item is neuron 0 of the next pattern).
    o : ``Out(stream.Signature(output_layout))``
        One item per group. Payload fields: ``index`` (``unsigned(index_bits)``, the
        selected neuron's index within the pattern; 0 when ``valid`` is 0), ``valid``
        (1 if the group had a negative ``delta``), ``last`` (1 on the pattern's final
        group).

    Raises
    ------
    TypeError
        If a parameter is not an integer.
    ValueError
        If a parameter is out of its range.
    """

    def __init__(self, *, z_bits, max_width):
        _check_int("z_bits", z_bits, 2, 31)
        _check_int("max_width", max_width, 1, MAX_WIDTH)
        self._z_bits = z_bits
        self._max_width = max_width
        super().__init__({
            "gamma": In(unsigned(max_width.bit_length())),
            "i": In(stream.Signature(self.input_layout)),
            "o": Out(stream.Signature(self.output_layout)),
        })

    @property
    def z_bits(self):
        """Width of the saturated pre-activation."""
        return self._z_bits

    @property
    def max_width(self):
        """Largest supported number of neurons per pattern."""
        return self._max_width

    @property
    def index_bits(self):
        """Width of ``index`` (holds ``0..max_width - 1``)."""
        return max(1, (self._max_width - 1).bit_length())

    @property
    def input_layout(self):
        """Payload layout of ``i``."""
        return data.StructLayout({"z": signed(self._z_bits), "rho": 1, "last": 1})

    @property
    def output_layout(self):
        """Payload layout of ``o``."""
        return data.StructLayout({"index": self.index_bits, "valid": 1, "last": 1})

    def elaborate(self, platform):
        m = Module()
        payload = self.i.payload

        k = Signal(self.index_bits)                 # neuron index within the pattern
        pos = Signal(self.gamma.shape())            # position within the group
        found = Signal()
        best_mag = Signal(self._z_bits, reset_less=True)    # meaningful only with `found`
        best_k = Signal(self.index_bits, reset_less=True)

        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        take = self.i.valid & self.i.ready

        # delta < 0: z < 0 with rho = +1, or z > 0 with rho = -1.
        negative = Mux(payload.rho, payload.z < 0, payload.z > 0)
        mag = abs(payload.z)
        better = negative & (~found | (mag < best_mag))
        cur_found = found | negative
        cur_k = Mux(better, k, best_k)
        cur_mag = Mux(better, mag, best_mag)
        group_end = payload.last | (pos == (self.gamma - 1)[:len(pos)])

        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(take):
            m.d.sync += k.eq(Mux(payload.last, 0, k + 1))
            with m.If(group_end):
                m.d.sync += [
                    self.o.valid.eq(1),
                    self.o.payload.index.eq(Mux(cur_found, cur_k, 0)),
                    self.o.payload.valid.eq(cur_found),
                    self.o.payload.last.eq(payload.last),
                    pos.eq(0),
                    found.eq(0),
                ]
            with m.Else():
                m.d.sync += [
                    pos.eq(pos + 1),
                    found.eq(cur_found),
                    best_k.eq(cur_k),
                    best_mag.eq(cur_mag),
                ]
        return m
