"""LocalClassifier against the golden ``local_output`` / ``argmax_margin`` / ``needs_update``."""

import gc

import numpy as np
import pytest
from amaranth.hdl import Fragment
from amaranth.sim import Simulator

from xnorlearn.hw.classifier import LocalClassifier
from xnorlearn.sim.runner import SIMULATORS, run_cocotb
from xnorlearn.sim.tb_classifier import classifier_cases, classifier_expected, classifier_items


@pytest.mark.parametrize("kwargs, error, match", [
    ({"classes": 1, "max_width": 8}, ValueError, r"classes must be in 2\.\.16, got 1"),
    ({"classes": 17, "max_width": 8}, ValueError, r"classes must be in 2\.\.16, got 17"),
    ({"classes": 2.0, "max_width": 8}, TypeError, r"classes must be an integer, got 2\.0"),
    ({"classes": True, "max_width": 8}, TypeError, r"classes must be an integer"),
    ({"classes": 4, "max_width": 0}, ValueError, r"max_width must be in 1\.\.1048576, got 0"),
    ({"classes": 4, "max_width": "8"}, TypeError, r"max_width must be an integer, got '8'"),
])
@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_bad_parameters(kwargs, error, match):
    with pytest.raises(error, match=match) as info:
        LocalClassifier(**kwargs)
    # The half-built component would warn "created but never used" in a later test.
    del info
    gc.collect()


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_parameters_keyword_only():
    with pytest.raises(TypeError) as info:
        LocalClassifier(10, 64)
    del info
    gc.collect()


@pytest.mark.parametrize("classes, max_width, score_bits, label_bits, margin_bits", [
    (2, 1, 2, 1, 2), (10, 64, 8, 4, 8), (16, 63, 7, 4, 7), (3, 1000, 11, 2, 11),
])
def test_widths(classes, max_width, score_bits, label_bits, margin_bits):
    dut = LocalClassifier(classes=classes, max_width=max_width)
    Fragment.get(dut, None)  # elaborates
    assert (dut.classes, dut.max_width) == (classes, max_width)
    assert dut.score_shape.signed and dut.score_shape.width == score_bits
    assert dut.label_bits == label_bits and dut.margin_bits == margin_bits
    assert len(dut.robustness) == margin_bits
    assert dut.input_layout.size == 2 + classes + label_bits
    assert dut.output_layout.size == classes * score_bits + label_bits + margin_bits + 1
    assert set(dut.signature.members) == {"i", "o", "robustness"}
    # The largest margin and the largest score fit.
    assert (2 * max_width) >> margin_bits == 0
    assert max_width <= 2 ** (score_bits - 1) - 1


def simulate(dut, cases, rng, *, idle=0.0, backpressure=0.0):
    """Stream ``cases`` through ``dut`` in amaranth.sim; returns the output items.

    ``label`` and ``robustness`` carry junk on all but the last item of a pattern
    (the unit must read them with ``last`` only); the sink checks that a stalled
    output item holds still.
    """
    outputs = []
    max_label = 1 << dut.label_bits
    max_r = 1 << dut.margin_bits

    async def source(ctx):
        for case in cases:
            for item in classifier_items(case):
                while rng.random() < idle:
                    ctx.set(dut.i.valid, 0)
                    ctx.set(dut.robustness, int(rng.integers(max_r)))
                    await ctx.tick()
                if item["last"]:
                    ctx.set(dut.robustness, case["robustness"])
                else:
                    item = dict(item, label=int(rng.integers(max_label)))
                    ctx.set(dut.robustness, int(rng.integers(max_r)))
                ctx.set(dut.i.payload, item)
                ctx.set(dut.i.valid, 1)
                # (not ``.until()``: a failing sink would then leave an unraisable error)
                while not (await ctx.tick().sample(dut.i.ready))[-1]:
                    pass
        ctx.set(dut.i.valid, 0)

    async def sink(ctx):
        held = None
        cycles = 0
        while len(outputs) < len(cases):
            ready = rng.random() >= backpressure
            ctx.set(dut.o.ready, ready)
            *_, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if held is not None:
                assert valid and payload.as_value().value == held, "stalled output changed"
            held = None
            if valid and ready:
                outputs.append(([payload.yhat[c] for c in range(dut.classes)],
                                payload.pred, payload.margin, bool(payload.update)))
            elif valid:
                held = payload.as_value().value
            cycles += 1
            assert cycles < 100 + 20 * sum(len(c["act"]) for c in cases), "no output (hang)"

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.run()
    return outputs


def expected(cases):
    return [(yhat, pred, margin, bool(update))
            for yhat, pred, margin, update in map(classifier_expected, cases)]


@pytest.mark.parametrize("classes, max_width, count", [(16, 40, 120), (10, 17, 120),
                                                       (3, 6, 120), (2, 1, 40)])
@pytest.mark.parametrize("idle, backpressure", [(0.0, 0.0), (0.3, 0.5)], ids=["nostall", "stall"])
def test_random_cases(rng, classes, max_width, count, idle, backpressure):
    dut = LocalClassifier(classes=classes, max_width=max_width)
    cases = classifier_cases(rng, classes, max_width, count)
    assert simulate(dut, cases, rng, idle=idle, backpressure=backpressure) == expected(cases)


def test_corner_cases():
    """Hand-picked patterns checked against literal values (not only the golden model)."""
    dut = LocalClassifier(classes=4, max_width=4)
    plus, minus = [1] * 4, [-1] * 4
    cases = [
        # All classes equal: ties everywhere -> class 0, margin 0.
        {"act": [1, -1], "P": [plus, minus], "label": 0, "robustness": 0},
        {"act": [1, -1], "P": [plus, minus], "label": 0, "robustness": 1},
        # Two-way tie for the top between classes 1 and 3 -> class 1, margin 0.
        {"act": [1, 1, 1], "P": [[-1, 1, -1, 1]] * 3, "label": 1, "robustness": 0},
        {"act": [1, 1, 1], "P": [[-1, 1, -1, 1]] * 3, "label": 3, "robustness": 0},
        # Margin exactly R (no update) and R one above (update); label out of the top.
        {"act": [1, 1], "P": [[1, 1, -1, -1], [1, -1, -1, -1]], "label": 0, "robustness": 2},
        {"act": [1, 1], "P": [[1, 1, -1, -1], [1, -1, -1, -1]], "label": 0, "robustness": 3},
        {"act": [1, 1], "P": [[1, 1, -1, -1], [1, -1, -1, -1]], "label": 2, "robustness": 0},
        # Width 1 and width max_width with the largest margin 2K; R above any margin.
        {"act": [-1], "P": [[1, 1, -1, 1]], "label": 2, "robustness": 0},
        {"act": [1] * 4, "P": [[-1, -1, -1, 1]] * 4, "label": 3, "robustness": 8},
        {"act": [1] * 4, "P": [[-1, -1, -1, 1]] * 4, "label": 3, "robustness": 9},
    ]
    want = [([2] * 4, 0, 0, False), ([2] * 4, 0, 0, True),
            ([-3, 3, -3, 3], 1, 0, False), ([-3, 3, -3, 3], 1, 0, True),
            ([2, 0, -2, -2], 0, 2, False), ([2, 0, -2, -2], 0, 2, True),
            ([2, 0, -2, -2], 0, 2, True),
            ([-1, -1, 1, -1], 2, 2, False),
            ([-4, -4, -4, 4], 3, 8, False), ([-4, -4, -4, 4], 3, 8, True)]
    assert expected(cases) == want
    assert simulate(dut, cases, np.random.default_rng(0), backpressure=0.5) == want


# Verilator builds take 10-30 s here: its second parameter set runs with the slow ones.
@pytest.mark.parametrize("simulator, classes, max_width", [
    ("verilator", 16, 24), ("icarus", 16, 24), ("icarus", 3, 5),
    pytest.param("verilator", 3, 5, marks=pytest.mark.slow),
])
def test_cocotb(build_root, simulator, classes, max_width):
    dut = LocalClassifier(classes=classes, max_width=max_width)
    run_cocotb(dut, name="local_classifier", test_module="xnorlearn.sim.tb_classifier",
               simulator=simulator,
               build_dir=f"{build_root}/classifier_{simulator}_c{classes}_w{max_width}",
               params={"classes": classes, "max_width": max_width, "cases": 150})


@pytest.mark.slow
@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("classes, max_width, cases", [(10, 200, 100), (2, 1, 300), (16, 1, 300),
                                                     (7, 64, 200)])
def test_cocotb_more(build_root, simulator, classes, max_width, cases):
    dut = LocalClassifier(classes=classes, max_width=max_width)
    run_cocotb(dut, name="local_classifier", test_module="xnorlearn.sim.tb_classifier",
               simulator=simulator,
               build_dir=f"{build_root}/classifier_{simulator}_c{classes}_w{max_width}",
               params={"classes": classes, "max_width": max_width, "cases": cases})
