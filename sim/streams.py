"""Stream bus models, payload packing and case bookkeeping for the cocotb benches.

The components of :mod:`xnorlearn.hw` talk through Amaranth streams
(:class:`amaranth.lib.stream.Signature`); in the exported Verilog a stream
``i`` becomes the ports ``i__valid``, ``i__ready`` and ``i__payload``. In the
style of cocotbext-axi, the ``TB`` class of each bench owns the clock, the
reset and the bus models of this module:

:class:`StreamSource`
    Drives a stream input of the DUT from a queue, with random idle cycles.
:class:`StreamMonitor`
    Passes every transfer of a stream to a callback, and fails the test if a
    payload offered and not taken is withdrawn or changed.
:class:`StreamSink`
    A monitor that also drives ``ready``, with random backpressure.
:class:`Scoreboard`
    In-order checker: expected items (from the golden model) against the
    items observed on an output.

A bench sends and receives field values (dicts and lists of integers):
:func:`pack` and :func:`unpack` translate them from and to payload bits with
the component's own ``data.StructLayout`` / ``data.ArrayLayout``. Its random
cases come from :func:`case_rng` (``XNORLEARN_SEED``, the parameter set and
the test's name), and :func:`record_cases` logs how many it checked and writes
the counts to ``cases.json`` in the build directory.

Timing: like cocotbext-axi's, the bus models act just after each rising edge
of the clock. What they read there is what the DUT's registers sampled at that
edge (so ``valid`` and ``ready`` both high means a transfer at that edge), and
what they drive there is seen by the DUT at the next edge.
"""

import functools
import json
import numbers
import zlib
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

import cocotb
from cocotb.triggers import Event, RisingEdge
from cocotb.types import Logic

from amaranth.hdl import Shape
from amaranth.lib import data

from xnorlearn.sim.runner import default_seed, tb_params

__all__ = ["pack", "unpack", "StreamSource", "StreamMonitor", "StreamSink", "Scoreboard",
           "wait_until", "case_rng", "record_cases"]


# -- payloads ------------------------------------------------------------------------------------

def pack(layout, value):
    """The bits of a payload of ``layout`` that holds ``value``.

    Parameters
    ----------
    layout : data.StructLayout, data.ArrayLayout or shape-like
        Payload layout; nested layouts are packed recursively.
    value : mapping, sequence or int
        For a ``StructLayout``, a mapping with exactly its field names; for an
        ``ArrayLayout``, a sequence of its length; for any other shape (enum
        shapes included), an integer that fits it. A signed field takes a
        negative value as two's complement.

    Returns
    -------
    int
        The payload, field ``f`` at bits ``f.offset`` to ``f.offset + f.width - 1``.

    Raises
    ------
    TypeError
        If ``value`` has not the form that ``layout`` asks for, or ``layout`` is a
        union (or other) layout, whose fields overlap.
    ValueError
        If a field is missing or unknown, an array has the wrong length, or a
        value does not fit its field.
    """
    return _codec(layout).pack(value, ())


def unpack(layout, bits):
    """The field values of payload ``bits`` of ``layout`` (the inverse of :func:`pack`).

    A ``StructLayout`` gives a dict, an ``ArrayLayout`` a list and any other shape
    an int (negative for a signed shape with its top bit set; enum shapes give the
    plain integer, so that unused encodings can be seen). Bits beyond the layout
    are ignored.

    Raises
    ------
    TypeError
        If ``layout`` is a union (or other) layout.
    """
    return _codec(layout).unpack(bits)


@functools.lru_cache(maxsize=256)
def _codec(layout):
    # Walking an Amaranth layout costs far more than the packing itself, and the
    # benches pack every beat of every stream: walk each layout once.
    if isinstance(layout, data.StructLayout):
        return _StructCodec(layout)
    if isinstance(layout, data.ArrayLayout):
        return _ArrayCodec(layout)
    if isinstance(layout, data.Layout):
        raise TypeError(f"cannot pack or unpack a {type(layout).__name__}, "
                        f"only StructLayout, ArrayLayout and plain shapes")
    return _ShapeCodec(Shape.cast(layout))


def _where(path):
    return "payload" + "".join(f"[{key}]" if isinstance(key, int) else f".{key}" for key in path)


class _ShapeCodec:
    def __init__(self, shape):
        self.shape, self.width, self.mask = shape, shape.width, (1 << shape.width) - 1
        if shape.signed:
            self.low, self.high = -(1 << (shape.width - 1)), 1 << (shape.width - 1)
        else:
            self.low, self.high = 0, 1 << shape.width

    def pack(self, value, where):
        if type(value) is not int:
            if not isinstance(value, numbers.Integral):
                raise TypeError(f"{_where(where)}: {self.shape!r} takes an integer, got {value!r}")
            value = int(value)
        if not self.low <= value < self.high:
            raise ValueError(f"{_where(where)}: {value} does not fit {self.shape!r} "
                             f"({self.low}..{self.high - 1})")
        return value & self.mask

    def unpack(self, bits):
        value = bits & self.mask
        if value >= self.high:
            value -= 1 << self.width
        return value


class _StructCodec:
    def __init__(self, layout):
        self.fields = [(name, field.offset, _codec(field.shape)) for name, field in layout]
        self.names = {name for name, _, _ in self.fields}

    def pack(self, value, where):
        if not isinstance(value, Mapping):
            raise TypeError(f"{_where(where)}: a StructLayout takes a mapping of its fields, "
                            f"got {value!r}")
        if value.keys() != self.names:
            raise ValueError(f"{_where(where)}: fields {sorted(value)} given, the layout has "
                             f"{[name for name, _, _ in self.fields]}")
        bits = 0
        for name, offset, codec in self.fields:
            bits |= codec.pack(value[name], where + (name,)) << offset
        return bits

    def unpack(self, bits):
        return {name: codec.unpack(bits >> offset) for name, offset, codec in self.fields}


class _ArrayCodec:
    def __init__(self, layout):
        self.length, self.elem = layout.length, _codec(layout.elem_shape)
        self.width = Shape.cast(layout.elem_shape).width

    def pack(self, value, where):
        if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (Sequence, np.ndarray)):
            raise TypeError(f"{_where(where)}: an ArrayLayout takes a sequence, got {value!r}")
        if len(value) != self.length:
            raise ValueError(f"{_where(where)}: {len(value)} elements given, the layout has {self.length}")
        bits = 0
        for index, elem in enumerate(value):
            bits |= self.elem.pack(elem, where + (index,)) << (index * self.width)
        return bits

    def unpack(self, bits):
        unpack_elem, width = self.elem.unpack, self.width
        return [unpack_elem(bits >> (index * width)) for index in range(self.length)]


# -- bus models ----------------------------------------------------------------------------------

def _value(signal):
    """The unsigned value of a DUT signal (a 1-bit one reads as a ``Logic``)."""
    value = signal.value
    return int(value) if isinstance(value, Logic) else value.to_unsigned()


def _probability(name, p):
    if not (isinstance(p, numbers.Real) and 0 <= p < 1):
        raise ValueError(f"{name} must be a probability in [0, 1), got {p!r}")
    return float(p)


class _StreamPorts:
    """The ``<name>__valid/ready/payload`` ports of a DUT stream, checked against ``layout``."""

    def __init__(self, dut, name, clock, layout, sideband):
        self.name = name
        self.clock = clock
        self.layout = layout
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        width = Shape.cast(layout).width
        if len(self.payload) != width:
            raise ValueError(f"DUT port {name}__payload is {len(self.payload)} bits wide, "
                             f"the layout {width} bits")
        self.sideband = dict(sideband or {})


class StreamSource(_StreamPorts):
    """Drives a stream input of the DUT from a queue of items.

    An item, once offered (``valid`` high), is held until the DUT takes it
    (``ready`` high at a rising edge). In every cycle in which the next item
    could be offered, the source idles instead with probability ``idle``.

    Parameters
    ----------
    dut : cocotb handle
        The top level, with ports ``<name>__valid``, ``<name>__ready`` and ``<name>__payload``.
    name : str
        Name of the stream member of the component (``"i"``).
    clock : cocotb handle
    layout : data.Layout or shape-like
        Payload layout; :meth:`send` takes the values :func:`pack` takes.
    rng : numpy.random.Generator, optional
        Draws the idle cycles; needed only when ``idle`` is not 0.
    idle : float, optional
        Probability of an idle cycle, in [0, 1). Default 0: back to back.
    sideband : mapping of str to cocotb handle, optional
        Other DUT inputs that are held together with each item, set from the
        keyword arguments of :meth:`send` (for example a setting that must stay
        put while a pattern streams in).

    Attributes
    ----------
    count : int
        Items the DUT has taken.
    idle : float

    Raises
    ------
    ValueError
        If the payload port's width is not the layout's, ``idle`` is not in
        [0, 1), or ``idle`` is not 0 and no ``rng`` is given.
    """

    def __init__(self, dut, name, clock, layout, *, rng=None, idle=0.0, sideband=None):
        super().__init__(dut, name, clock, layout, sideband)
        self.idle = _probability("idle", idle)
        if self.idle and rng is None:
            raise ValueError("a source with idle cycles needs an rng")
        self.rng = rng
        self.count = 0
        self._queue = deque()
        self._empty = Event()
        self._empty.set()
        self.valid.value = 0
        self._task = cocotb.start_soon(self._run())

    def send(self, item, **sideband):
        """Queue ``item`` (field values of the layout), with the values of the sideband inputs.

        Raises
        ------
        TypeError, ValueError
            As :func:`pack` does, or if the sideband names are not those of the source.
        """
        if set(sideband) != set(self.sideband):
            raise ValueError(f"{self.name}: sideband values {sorted(sideband)} given, "
                             f"the source drives {sorted(self.sideband)}")
        self._queue.append((pack(self.layout, item), sideband))
        self._empty.clear()

    @property
    def empty(self):
        """Whether every queued item has been taken."""
        return self._empty.is_set()

    async def wait(self):
        """Wait until every queued item has been taken."""
        await self._empty.wait()

    async def _run(self):
        busy = False
        while True:
            await RisingEdge(self.clock)
            if busy and self.ready.value == 1:
                busy = False
                self.count += 1
            if busy:
                continue
            if self._queue and (not self.idle or self.rng.random() >= self.idle):
                bits, sideband = self._queue.popleft()
                self.payload.value = bits
                for name, value in sideband.items():
                    self.sideband[name].value = value
                self.valid.value = 1
                busy = True
            else:
                self.valid.value = 0
                if not self._queue:
                    self._empty.set()


class StreamMonitor(_StreamPorts):
    """Calls ``callback(item, **sideband)`` for every transfer on a DUT stream.

    ``item`` is the unpacked payload (see :func:`unpack`); the sideband values
    are those of the given signals at the same edge. The monitor also checks the
    stream rule that a payload offered and not taken stays offered, unchanged
    (sideband included), and raises ``AssertionError`` (failing the test) if not.

    Parameters
    ----------
    dut, name, clock, layout
        As for :class:`StreamSource`.
    callback : callable
    sideband : mapping of str to cocotb handle, optional
        Signals sampled with each transfer, passed as keyword arguments.

    Attributes
    ----------
    count : int
        Transfers seen.

    Raises
    ------
    ValueError
        If the payload port's width is not the layout's.
    """

    def __init__(self, dut, name, clock, layout, callback, *, sideband=None):
        super().__init__(dut, name, clock, layout, sideband)
        self.callback = callback
        self.count = 0
        self._held = None
        self._task = cocotb.start_soon(self._run())

    async def _run(self):
        while True:
            await RisingEdge(self.clock)
            self._sample()

    def _sample(self):
        if self.valid.value != 1:
            assert self._held is None, \
                f"{self.name}: valid dropped before payload {self._held[0]:#x} was taken"
            return
        beat = (_value(self.payload), tuple(_value(s) for s in self.sideband.values()))
        if self._held is not None:
            assert beat == self._held, \
                f"{self.name}: offered {self._held} changed to {beat} before it was taken"
        if self.ready.value == 1:
            self._held = None
            self.count += 1
            self.callback(unpack(self.layout, beat[0]), **dict(zip(self.sideband, beat[1])))
        else:
            self._held = beat


class StreamSink(StreamMonitor):
    """A :class:`StreamMonitor` of a DUT stream output that also drives its ``ready``.

    ``ready`` is low in each cycle with probability ``backpressure``.

    Parameters
    ----------
    dut, name, clock, layout, callback
        As for :class:`StreamMonitor`.
    rng : numpy.random.Generator, optional
        Draws the backpressure; needed only when ``backpressure`` is not 0.
    backpressure : float, optional
        In [0, 1). Default 0: always ready.

    Raises
    ------
    ValueError
        If the payload port's width is not the layout's, ``backpressure`` is not in
        [0, 1), or ``backpressure`` is not 0 and no ``rng`` is given.
    """

    def __init__(self, dut, name, clock, layout, callback, *, rng=None, backpressure=0.0):
        self.backpressure = _probability("backpressure", backpressure)
        if self.backpressure and rng is None:
            raise ValueError("a sink with backpressure needs an rng")
        self.rng = rng
        super().__init__(dut, name, clock, layout, callback)
        self._drive()

    def _sample(self):
        super()._sample()
        self._drive()

    def _drive(self):
        self.ready.value = int(not self.backpressure or self.rng.random() >= self.backpressure)


class Scoreboard:
    """In-order checker of a DUT output against the golden model.

    The bench calls :meth:`expect` with each expected item (typically from an
    input monitor's callback, through the golden model) and :meth:`observe` with
    each item the output sink takes. Items are compared in order, as whole
    values; a mismatch raises ``AssertionError`` at once.

    Parameters
    ----------
    describe : callable, optional
        Formats an item for messages (default ``repr``).
    max_early : int, optional
        How many observed items may wait for their expectation. Default 0: an
        output with nothing expected is an error at once. A DUT that answers part
        of a pattern before the whole pattern (and so the golden answer) is in
        needs more.

    Attributes
    ----------
    checked : int
        Items compared (and equal).
    """

    def __init__(self, *, describe=repr, max_early=0):
        self.describe = describe
        self.max_early = max_early
        self.checked = 0
        self._expected = deque()
        self._early = deque()

    @property
    def pending(self):
        """Number of expected items not observed yet."""
        return len(self._expected)

    def expect(self, item, note=None):
        """Queue an expected item; ``note`` (say, the input it answers) goes into messages."""
        self._expected.append((item, note))
        self._match()

    def observe(self, item):
        """Compare an observed item with the oldest expected one."""
        self._early.append(item)
        assert len(self._early) <= self.max_early or self._expected, \
            f"output {self.describe(item)} with nothing expected"
        self._match()

    def _match(self):
        while self._expected and self._early:
            (want, note), got = self._expected.popleft(), self._early.popleft()
            where = f"output {self.checked}" + (f" ({note})" if note is not None else "")
            assert got == want, f"{where}: got {self.describe(got)}, expected {self.describe(want)}"
            self.checked += 1

    def check_done(self):
        """Raise ``AssertionError`` unless every expected item was observed and nothing more."""
        assert not self._expected, f"{len(self._expected)} outputs missing"
        assert not self._early, f"{len(self._early)} outputs with nothing expected"


async def wait_until(clock, condition, *, max_cycles=None):
    """Wait rising edges of ``clock`` until ``condition()`` holds (or ``max_cycles`` passed).

    Returns the number of edges waited.
    """
    cycles = 0
    while not condition() and (max_cycles is None or cycles < max_cycles):
        await RisingEdge(clock)
        cycles += 1
    return cycles


# -- cases ---------------------------------------------------------------------------------------

def case_rng(test_name, params=None):
    """The NumPy generator of a test's random cases.

    Seeded from ``XNORLEARN_SEED`` (:func:`~xnorlearn.sim.runner.default_seed`),
    the parameter set as a JSON string (``params``, default
    :func:`~xnorlearn.sim.runner.tb_params`) and the test's name, so that each
    test of each parameter set draws its own cases, and a new seed new ones.
    Bus models get independent generators from ``rng.spawn``.
    """
    params = json.dumps(tb_params() if params is None else params, sort_keys=True)
    return np.random.default_rng([default_seed(), zlib.crc32(params.encode()),
                                  zlib.crc32(test_name.encode())])


_recorded = {}


def record_cases(dut, test_name, count, **info):
    """Log that ``test_name`` checked ``count`` cases and rewrite ``cases.json``.

    ``cases.json`` (in the cwd, the build directory of the parameter set) holds
    ``{"cases": total, "tests": {test_name: count, ...}}`` for the tests of this
    run so far. ``info`` (say, the DUT's parameters) is added to the log line.
    """
    _recorded[test_name] = count
    detail = ", ".join(f"{k}={v}" for k, v in info.items())
    dut._log.info("%s: checked %d cases%s", test_name, count, f" ({detail})" if detail else "")
    Path("cases.json").write_text(json.dumps({"cases": sum(_recorded.values()), "tests": _recorded},
                                             indent=1, sort_keys=True))
