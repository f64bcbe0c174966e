"""Sign / threshold unit: ``a = (z >= theta[k]) XOR flip[k]`` per neuron ``k``."""

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2
from xnorlearn.hw._params import check_int as _check_int

__all__ = ["ThresholdUnit"]




class ThresholdUnit(wiring.Component):
    """Binary activation of a pre-activation against a per-neuron threshold.

    For each input ``(index, z)`` the unit returns the bit
    ``a = (z >= theta[index]) XOR flip[index]`` (bit 1 means +1), as
    :func:`xnorlearn.sw.golden.literal.threshold_unit` defines it. With
    ``theta = 0`` and ``flip = 0`` (the reset contents) this is ``sign(z)`` with
    ``sign(0) = +1``, the activation used during training; a batch norm folded
    into a threshold (``theta`` the rounded threshold, ``flip`` set where the
    batch-norm scale is negative) uses the same unit for inference.

    ``theta`` and ``flip`` live in a memory of ``max_neurons`` entries with one
    synchronous read port, written through ``load``. A write is seen by an
    input accepted in the same cycle or later. The throughput is one result per
    cycle. Latency is one cycle: the comparison follows the memory's output in
    the same cycle. With ``pipelined=True`` the memory's output is registered
    before the comparison and the result after it, for a latency of three cycles
    and no logic behind the block RAM's slow clock-to-output. The pipeline
    stalls as a whole while ``o.ready`` is low (``i.ready = ~o.valid | o.ready``).

    Parameters
    ----------
    max_neurons : int
        Entries of the threshold memory, 1..65536.
    z_width : int
        Width of the signed pre-activation ``z``, 2..32.
    theta_width : int or None
        Width of the signed thresholds, 2..32; ``None`` (default) uses ``z_width``.
    pipelined : bool
        Register the memory's output and the result (latency 3 instead of 1).
    patterns : int
        Pre-activations per input, 1..64 (default 1): ``patterns`` values of ``z`` for
        the same neuron (several patterns of a minibatch in lockstep) share one read of
        the memory and give ``patterns`` bits of ``a``.

    Members
    -------
    load : ``In(stream.Signature(load_layout))``
        Memory write port. Payload fields: ``index``, ``theta`` (signed),
        ``flip`` (1 bit). ``load.ready`` is always 1: a write happens in every
        cycle ``load.valid`` is high. (The stream is not declared
        ``always_ready`` so that the unit can be a top-level Verilog module.)
    i : ``In(stream.Signature(input_layout))``
        Payload fields: ``index`` (neuron, ``0..max_neurons-1``), ``z`` (signed; an
        ``ArrayLayout`` of ``patterns`` of them when ``patterns > 1``).
    o : ``Out(stream.Signature(output_layout))``
        One result per input, in order. Payload field: ``a`` (``patterns`` bits, bit
        ``j`` for ``z[j]``; 1 means +1).

    Attributes
    ----------
    max_neurons, z_width, theta_width, patterns : int
        The parameters (``theta_width`` resolved).
    pipelined : bool
        The parameter.
    latency : int
        Cycles from an accepted input to its output item: 1, or 3 when pipelined.
    theta_min, theta_max : int
        Range of a storable ``theta``.
    load_layout, input_layout, output_layout : amaranth.lib.data.StructLayout
        Payload layouts of ``load``, ``i`` and ``o``.

    Raises
    ------
    TypeError
        If a parameter is not an integer (or None for ``theta_width``), or
        ``pipelined`` is not a bool.
    ValueError
        If a parameter is out of its range.
    """

    def __init__(self, *, max_neurons, z_width, theta_width=None, pipelined=False, patterns=1):
        _check_int("max_neurons", max_neurons, 1, 65536)
        _check_int("patterns", patterns, 1, 64)
        if not isinstance(pipelined, bool):
            raise TypeError(f"pipelined must be a bool, not {pipelined!r}")
        _check_int("z_width", z_width, 2, 32)
        if theta_width is None:
            theta_width = z_width
        _check_int("theta_width", theta_width, 2, 32)
        self._max_neurons = max_neurons
        self._z_width = z_width
        self._theta_width = theta_width
        self._pipelined = pipelined
        self._patterns = patterns
        z_shape = (signed(z_width) if patterns == 1
                   else data.ArrayLayout(signed(z_width), patterns))
        index_shape = unsigned(ceil_log2(max_neurons))
        self._entry_layout = data.StructLayout({
            "theta": signed(theta_width),
            "flip": unsigned(1),
        })
        self._load_layout = data.StructLayout({
            "index": index_shape,
            "theta": signed(theta_width),
            "flip": unsigned(1),
        })
        self._input_layout = data.StructLayout({
            "index": index_shape,
            "z": z_shape,
        })
        self._output_layout = data.StructLayout({
            "a": unsigned(patterns),
        })
        super().__init__({
            "load": In(stream.Signature(self._load_layout)),
            "i": In(stream.Signature(self._input_layout)),
            "o": Out(stream.Signature(self._output_layout)),
        })

    max_neurons = property(lambda self: self._max_neurons)
    z_width = property(lambda self: self._z_width)
    theta_width = property(lambda self: self._theta_width)
    pipelined = property(lambda self: self._pipelined)
    patterns = property(lambda self: self._patterns)
    latency = property(lambda self: 3 if self._pipelined else 1)
    theta_min = property(lambda self: -2 ** (self._theta_width - 1))
    theta_max = property(lambda self: 2 ** (self._theta_width - 1) - 1)
    load_layout = property(lambda self: self._load_layout)
    input_layout = property(lambda self: self._input_layout)
    output_layout = property(lambda self: self._output_layout)

    def elaborate(self, platform):
        m = Module()

        m.submodules.table = table = Memory(shape=self._entry_layout,
                                            depth=self._max_neurons, init=[])
        wr = table.write_port()
        # A transparent port is an address register before an asynchronous read, and
        # synthesis then moves the register after it into the block RAM, so the pipelined
        # unit reads without transparency and bypasses a same-cycle write itself.
        rd = table.read_port(transparent_for=() if self._pipelined else (wr,))
        m.d.comb += [
            wr.addr.eq(self.load.payload.index),
            wr.data.theta.eq(self.load.payload.theta),
            wr.data.flip.eq(self.load.payload.flip),
            wr.en.eq(self.load.valid),
            self.load.ready.eq(1),
        ]

        advance = ~self.o.valid | self.o.ready
        z = Signal(self._input_layout["z"].shape, reset_less=True)

        def compare(z, entry):
            zs = [z] if self._patterns == 1 else [z[j] for j in range(self._patterns)]
            return Cat(*((zj >= entry.theta) ^ entry.flip for zj in zs))
        m.d.comb += [
            self.i.ready.eq(advance),
            rd.addr.eq(self.i.payload.index),
            rd.en.eq(advance),
        ]
        if not self._pipelined:
            # The read port's data and `z` advance together and hold while the output
            # is stalled.
            with m.If(advance):
                m.d.sync += [
                    self.o.valid.eq(self.i.valid),
                    z.eq(self.i.payload.z),
                ]
            m.d.comb += self.o.payload.a.eq(compare(z, rd.data))
        else:
            v1, v2 = Signal(), Signal()
            z2 = Signal(self._input_layout["z"].shape, name="z2", reset_less=True)
            entry = Signal(self._entry_layout, reset_less=True)
            bypass1, bypass2 = Signal(), Signal()
            new1 = Signal(self._entry_layout, reset_less=True)
            new2 = Signal(self._entry_layout, reset_less=True)
            a = Signal(self._patterns, reset_less=True)
            current = Signal(self._entry_layout)
            m.d.comb += current.eq(Mux(bypass2, new2, entry))
            with m.If(advance):
                m.d.sync += [
                    v1.eq(self.i.valid),
                    z.eq(self.i.payload.z),
                    bypass1.eq(self.load.valid
                               & (self.load.payload.index == self.i.payload.index)),
                    new1.eq(wr.data),
                    v2.eq(v1),
                    z2.eq(z),
                    entry.eq(rd.data),
                    bypass2.eq(bypass1),
                    new2.eq(new1),
                    self.o.valid.eq(v2),
                    a.eq(compare(z2, current)),
                ]
            m.d.comb += self.o.payload.a.eq(a)
        return m
