# amaranth: UnusedElaboratable=no
"""cocotb bench of :class:`xnorlearn.hw.classifier.LocalClassifier`.

Also home of the random case generator that the Amaranth simulation test reuses.

Parameters (:func:`~xnorlearn.sim.runner.tb_params`): ``classes``, ``max_width``,
``cases`` (random patterns per test, default 150).
"""

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles

from xnorlearn.hw.classifier import LocalClassifier
from xnorlearn.sim.runner import tb_params
from xnorlearn.sim.streams import (Scoreboard, StreamMonitor, StreamSink, StreamSource, case_rng,
                                   record_cases, wait_until)
from xnorlearn.sw.golden.literal import argmax_margin, local_output, needs_update

__all__ = ["classifier_cases", "classifier_expected", "classifier_items", "TB"]


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

class TB:
    """Clock, reset, stream models and scoreboard around a ``LocalClassifier``.

    The input monitor rebuilds each accepted pattern (and the ``robustness`` held
    with its last item), runs the golden model on it and queues the expected
    output in the scoreboard; the output sink checks every output item against it.
    """

    def __init__(self, dut, *, test_name, idle=0.0, backpressure=0.0):
        params = tb_params()
        self.dut = dut
        self.block = LocalClassifier(classes=params["classes"], max_width=params["max_width"])
        got, want = len(dut.robustness), self.block.robustness.shape().width
        assert got == want, f"DUT robustness has {got} bits, the parameters give {want}"
        self.classes = self.block.classes
        self.max_width = self.block.max_width
        self.rng = case_rng(test_name)
        source_rng, sink_rng = self.rng.spawn(2)
        self.scoreboard = Scoreboard()
        self.pattern = []
        Clock(dut.clk, 10, unit="ns").start()
        dut.rst.value = 1
        dut.robustness.value = 0
        self.source = StreamSource(dut, "i", dut.clk, self.block.input_layout, rng=source_rng,
                                   idle=idle, sideband={"robustness": dut.robustness})
        self.monitor = StreamMonitor(dut, "i", dut.clk, self.block.input_layout, self._on_input,
                                     sideband={"robustness": dut.robustness})
        self.sink = StreamSink(dut, "o", dut.clk, self.block.output_layout, self._on_output,
                               rng=sink_rng, backpressure=backpressure)

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 3)
        self.dut.rst.value = 0

    def send(self, case):
        """Queue one pattern; ``label`` and ``robustness`` carry junk on all but its last item."""
        max_label = 1 << self.block.label_bits
        max_r = 1 << self.block.margin_bits
        for item in classifier_items(case):
            robustness = case["robustness"]
            if not item["last"]:
                item["label"] = int(self.rng.integers(max_label))
                robustness = int(self.rng.integers(max_r))
            self.source.send(item, robustness=robustness)

    def _on_input(self, item, *, robustness):
        self.pattern.append((item["act"], item["row"]))
        if item["last"]:
            case = {"act": [1 if a else -1 for a, _ in self.pattern],
                    "P": [[1 if (row >> c) & 1 else -1 for c in range(self.classes)]
                          for _, row in self.pattern],
                    "label": item["label"], "robustness": robustness}
            yhat, pred, margin, update = classifier_expected(case)
            self.scoreboard.expect({"yhat": yhat, "pred": pred, "margin": margin,
                                    "update": int(update)})
            self.pattern = []

    def _on_output(self, out):
        self.scoreboard.observe(out)

    async def run(self, cases):
        """Send ``cases`` and wait until every output has been checked."""
        for case in cases:
            self.send(case)
        await self.source.wait()
        await wait_until(self.dut.clk, lambda: self.scoreboard.checked >= len(cases))
        await ClockCycles(self.dut.clk, 10)
        self.scoreboard.check_done()
        assert self.monitor.count == sum(len(c["act"]) for c in cases)
        assert self.sink.count == len(cases), f"{self.sink.count} outputs for {len(cases)} patterns"


async def _check(dut, test, *, kinds=CLASSIFIER_KINDS, idle=0.0, backpressure=0.0):
    tb = TB(dut, test_name=test, idle=idle, backpressure=backpressure)
    await tb.reset()
    count = tb_params().get("cases", 150)
    cases = classifier_cases(tb.rng, tb.classes, tb.max_width, count, kinds)
    await tb.run(cases)
    record_cases(dut, test, tb.scoreboard.checked)


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
