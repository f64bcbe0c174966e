"""cocotb bench of :class:`xnorlearn.hw.classifier.LocalClassifier`.

Also home of the small valid/ready stream driver, monitor and sink used by the
benches of this package, and of the random case generator that the Amaranth
simulation test reuses.

Parameters (:func:`~xnorlearn.sim.runner.tb_params`): ``classes``, ``max_width``,
``cases`` (random patterns per test, default 150).
"""

import json
from collections import deque
from pathlib import Path

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, Event, RisingEdge
from cocotb.types import Logic

from amaranth.hdl import Fragment
from amaranth.lib import data

from xnorlearn.hw.classifier import LocalClassifier
from xnorlearn.sim.runner import default_seed, tb_params
from xnorlearn.sw.golden.literal import argmax_margin, local_output, needs_update

__all__ = ["StreamSource", "StreamMonitor", "StreamSink", "record_cases", "classifier_cases",
           "classifier_expected", "ClassifierTB"]

CLOCK_NS = 10


def _high(signal):
    return signal.value == 1


def _unsigned(signal):
    value = signal.value
    return int(value) if isinstance(value, Logic) else value.to_unsigned()


class StreamSource:
    """Drives ``<name>__valid`` and ``<name>__payload`` of a DUT stream input.

    Items are integers (the packed payload), each with optional values for
    ``sideband`` signals that are held together with the payload. Before each
    item the source idles for a cycle with probability ``idle``.
    """

    def __init__(self, dut, name, clock, *, rng, idle=0.0, sideband=()):
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.width = len(self.payload)
        self.clock = clock
        self.sideband = tuple(sideband)
        self.rng = rng
        self.idle = idle
        self._queue = deque()
        self._empty = Event()
        self._empty.set()
        self.valid.value = 0
        cocotb.start_soon(self._run())

    def send(self, word, sideband=()):
        """Queue one item (and the values of the sideband signals to hold with it)."""
        if not 0 <= word < (1 << self.width):
            raise ValueError(f"payload {word:#x} does not fit {self.width} bits")
        self._queue.append((word, tuple(sideband)))
        self._empty.clear()

    async def wait_empty(self):
        """Wait until every queued item has been accepted."""
        await self._empty.wait()

    async def _run(self):
        busy = False
        while True:
            await RisingEdge(self.clock)
            if busy and _high(self.ready):
                busy = False
            if not busy:
                if self._queue and self.rng.random() >= self.idle:
                    word, values = self._queue.popleft()
                    self.payload.value = word
                    for signal, value in zip(self.sideband, values):
                        signal.value = value
                    self.valid.value = 1
                    busy = True
                else:
                    self.valid.value = 0
                    if not self._queue:
                        self._empty.set()


class StreamMonitor:
    """Calls ``callback(payload, sideband_values)`` for each transfer on a DUT stream."""

    def __init__(self, dut, name, clock, callback, *, sideband=()):
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.clock = clock
        self.callback = callback
        self.sideband = tuple(sideband)
        self.count = 0
        cocotb.start_soon(self._run())

    async def _run(self):
        while True:
            await RisingEdge(self.clock)
            if _high(self.valid) and _high(self.ready):
                self.count += 1
                self.callback(_unsigned(self.payload), tuple(map(_unsigned, self.sideband)))


class StreamSink(StreamMonitor):
    """Drives ``<name>__ready`` (low with probability ``backpressure``) and monitors transfers."""

    def __init__(self, dut, name, clock, callback, *, rng, backpressure=0.0):
        self.rng = rng
        self.backpressure = backpressure
        getattr(dut, f"{name}__ready").value = 0
        super().__init__(dut, name, clock, callback)
        cocotb.start_soon(self._drive())

    async def _drive(self):
        while True:
            await RisingEdge(self.clock)
            self.ready.value = int(self.rng.random() >= self.backpressure)


_CASES = {}


def record_cases(dut, test, count):
    """Log ``count`` checked cases and write them to ``cases.json`` in the test directory."""
    _CASES[test] = count
    dut._log.info("%s: checked %d cases", test, count)
    Path("cases.json").write_text(json.dumps(
        {"tests": _CASES, "total": sum(_CASES.values())}, indent=1, sort_keys=True))


# -- random cases -------------------------------------------------------------------------

CLASSIFIER_KINDS = ("random", "small", "full", "equal", "tie2", "spread", "const")


def classifier_cases(rng, classes, max_width, count, kinds=CLASSIFIER_KINDS):
    """Random patterns for :class:`LocalClassifier`, mixing corner kinds.

    Each case is a dict with ``act`` (K values ±1), ``P`` (K rows of ``classes``
    values ±1), ``label`` and ``robustness``. Kinds: ``random`` (K uniform in
    1..max_width), ``small`` (K <= 3, ties everywhere), ``full`` (K = max_width),
    ``equal`` (all classes score the same), ``tie2`` (two classes tie for the
    top), ``spread`` (one class at +K, all others at -K: the largest margin),
    ``const`` (constant activations and rows). ``robustness`` is often the
    margin itself or one off it; ``label`` is often the argmax, sometimes out
    of ``range(classes)`` when the label field can hold such a value.
    """
    label_bits = max(1, (classes - 1).bit_length())
    margin_bits = (2 * max_width).bit_length()
    cases = []
    for n in range(count):
        kind = kinds[n % len(kinds)] if n < len(kinds) else kinds[rng.integers(len(kinds))]
        if kind == "full":
            K = max_width
        elif kind == "small":
            K = int(rng.integers(1, min(3, max_width) + 1))
        else:
            K = int(rng.integers(1, max_width + 1))
        act = rng.choice([-1, 1], size=K)
        P = rng.choice([-1, 1], size=(K, classes))
        if kind == "equal":
            P = np.repeat(rng.choice([-1, 1], size=(K, 1)), classes, axis=1)
        elif kind == "tie2":
            a, b = rng.choice(classes, size=2, replace=False)
            P[:, a] = act
            P[:, b] = act
        elif kind == "spread":
            P = np.repeat(-act[:, None], classes, axis=1)
            P[:, rng.integers(classes)] = act
        elif kind == "const":
            act = np.full(K, rng.choice([-1, 1]))
            P = np.full((K, classes), rng.choice([-1, 1]))
        act, P = [int(v) for v in act], [[int(v) for v in row] for row in P]
        pred, margin = argmax_margin(local_output(act, P))
        r_choice = rng.integers(7)
        robustness = [margin, margin, margin + 1, max(0, margin - 1), 0,
                      int(rng.integers(0, 2 * K + 2)), (1 << margin_bits) - 1][r_choice]
        l_choice = rng.integers(4)
        if l_choice == 0:
            label = pred
        elif l_choice == 1 and classes < (1 << label_bits):
            label = int(rng.integers(classes, 1 << label_bits))
        else:
            label = int(rng.integers(classes))
        cases.append({"act": act, "P": P, "label": label, "robustness": robustness})
    return cases


def classifier_expected(case):
    """Golden output of one pattern: ``(yhat, pred, margin, update)``."""
    yhat = local_output(case["act"], case["P"])
    pred, margin = argmax_margin(yhat)
    return yhat, pred, margin, needs_update(yhat, case["label"], case["robustness"])


def classifier_items(case):
    """The input payload fields of a pattern, one dict per neuron."""
    K = len(case["act"])
    return [{"act": int(case["act"][k] > 0),
             "row": sum(1 << c for c, p in enumerate(case["P"][k]) if p > 0),
             "label": case["label"],
             "last": int(k == K - 1)} for k in range(K)]


# -- bench --------------------------------------------------------------------------------

class ClassifierTB:
    """Clock, reset, stream driver/monitors and scoreboard around a ``LocalClassifier``.

    The input monitor rebuilds each accepted pattern (and the ``robustness`` held
    with its last item), runs the golden model on it and queues the expected
    output; the output sink checks every output item against that queue in order.
    """

    def __init__(self, dut, *, test, idle=0.0, backpressure=0.0):
        params = tb_params()
        self.dut = dut
        self.block = LocalClassifier(classes=params["classes"], max_width=params["max_width"])
        Fragment.get(self.block, None)  # only its layouts are needed; mark it used
        self.in_layout = self.block.input_layout
        self.out_layout = self.block.output_layout
        for port, want in (("i__payload", self.in_layout.size),
                           ("o__payload", self.out_layout.size),
                           ("robustness", self.block.robustness.shape().width)):
            got = len(getattr(dut, port))
            assert got == want, f"DUT {port} has {got} bits, the parameters give {want}"
        self.classes = self.block.classes
        self.max_width = self.block.max_width
        self.rng = np.random.default_rng(
            [default_seed(), self.classes, self.max_width, sum(map(ord, test))])
        self.expected = deque()
        self.pattern = []
        self.checked = 0
        cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
        dut.rst.value = 1
        dut.robustness.value = 0
        self.source = StreamSource(dut, "i", dut.clk, rng=self.rng, idle=idle,
                                   sideband=[dut.robustness])
        self.monitor = StreamMonitor(dut, "i", dut.clk, self._on_input, sideband=[dut.robustness])
        self.sink = StreamSink(dut, "o", dut.clk, self._on_output, rng=self.rng,
                               backpressure=backpressure)

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 3)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)

    def send(self, case):
        """Queue one pattern; ``label`` and ``robustness`` carry junk on all but its last item."""
        max_label = 1 << self.block.label_bits
        max_r = 1 << self.block.margin_bits
        for item in classifier_items(case):
            robustness = case["robustness"]
            if not item["last"]:
                item["label"] = int(self.rng.integers(max_label))
                robustness = int(self.rng.integers(max_r))
            self.source.send(self.in_layout.const(item).as_value().value, [robustness])

    def _on_input(self, word, sideband):
        item = data.Const(self.in_layout, word)
        self.pattern.append((item.act, item.row))
        if item.last:
            case = {"act": [1 if a else -1 for a, _ in self.pattern],
                    "P": [[1 if (row >> c) & 1 else -1 for c in range(self.classes)]
                          for _, row in self.pattern],
                    "label": item.label, "robustness": sideband[0]}
            self.expected.append(classifier_expected(case))
            self.pattern = []

    def _on_output(self, word, _sideband):
        out = data.Const(self.out_layout, word)
        got = ([out.yhat[c] for c in range(self.classes)], out.pred, out.margin, bool(out.update))
        assert self.expected, f"output {got} with no pattern pending"
        want = self.expected.popleft()
        want = (want[0], want[1], want[2], bool(want[3]))
        assert got == want, f"pattern {self.checked}: got {got}, expected {want}"
        self.checked += 1

    async def run(self, cases):
        """Send ``cases`` and wait until every output has been checked."""
        for case in cases:
            self.send(case)
        await self.source.wait_empty()
        while self.checked < len(cases):
            await RisingEdge(self.dut.clk)
        await ClockCycles(self.dut.clk, 10)
        assert not self.expected and self.monitor.count == sum(len(c["act"]) for c in cases)
        assert self.sink.count == len(cases), f"{self.sink.count} outputs for {len(cases)} patterns"


async def _check(dut, test, *, kinds=CLASSIFIER_KINDS, idle=0.0, backpressure=0.0):
    tb = ClassifierTB(dut, test=test, idle=idle, backpressure=backpressure)
    await tb.reset()
    count = tb_params().get("cases", 150)
    cases = classifier_cases(tb.rng, tb.classes, tb.max_width, count, kinds)
    await tb.run(cases)
    record_cases(dut, test, tb.checked)


@cocotb.test(timeout_time=20, timeout_unit="ms")
async def test_random(dut):
    """Random patterns back to back, output always ready."""
    await _check(dut, "test_random")


@cocotb.test(timeout_time=20, timeout_unit="ms")
async def test_stalls(dut):
    """Random patterns with idle input cycles and output backpressure."""
    await _check(dut, "test_stalls", idle=0.3, backpressure=0.5)


@cocotb.test(timeout_time=20, timeout_unit="ms")
async def test_corners(dut):
    """Ties, equal scores, widths 1 and max_width, under heavy backpressure."""
    await _check(dut, "test_corners", kinds=("small", "full", "equal", "tie2", "spread", "const"),
                 backpressure=0.7)
