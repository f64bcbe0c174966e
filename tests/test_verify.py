"""``xnorlearn verify``: argument errors (no simulator), the shared comparison, build
sizing, and end-to-end runs on Verilator (a pass and a deliberate mismatch)."""

import argparse
import dataclasses
import json

import numpy as np
import pytest

from xnorlearn.contract import Build
from xnorlearn.sim import observe
from xnorlearn.sw import verify
from xnorlearn.sw.cli import main
from xnorlearn.sw.golden import FastBMLP, NetworkConfig

TINY = ["verify", "--dataset", "generated", "--features", "40", "--hidden", "16", "12",
        "--classes", "3", "--lanes", "32", "--batches", "2", "--batch-size", "6",
        "--gamma", "4", "4"]


# -- arguments (checked before anything is built) ------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["--hidden", "5000"], r"neurons in a hidden layer = 5000, the limit max_width allows "
                           r"1..4095"),
    (["--hidden"] + ["8"] * 9, r"hidden layers = 9, the limit max_layers allows 1..8"),
    (["--lanes", "48"], r"lanes must be a multiple of 32 in 32..1024, got 48"),
    (["--lanes", "16"], r"XNOR lanes \(--lanes\) = 16, the limit lanes allows 32..1024"),
    (["--batch-size", "2000", "--batches", "1"],
     r"patterns per minibatch \(--batch-size\) = 2000, the limit max_batch allows 1..1024"),
    (["--features", "5000"], r"inputs of the first layer \(K_0, features\) = 5000, the limit "
                             r"max_fan_in allows 1..4095"),
    (["--classes", "17"], r"--classes must be in 2..16"),
    (["--hidden", "135", "--gamma", "1"], r"groups per layer \(K_l / gamma_l\) = 135, the "
                                          r"limit max_groups allows 1..64"),
    (["--hidden", "135", "--gamma", "7"], r"gamma\[0\] = 7 does not divide layer width 135"),
    (["--seed", "-1"], r"--seed must be in 0..4294967295, got -1"),
    (["--timeout", "0"], r"--timeout must be a positive number of seconds, got 0.0"),
    (["--dataset", "nonexistent-dir"], r"unknown dataset 'nonexistent-dir'"),
    (["--dataset", "mnist", "--data-dir", "/nonexistent"], r"mnist not found"),
    (["--preset", "arty"], r"--preset must be one of pynq-z2, ulx3s-85f, got 'arty'"),
    (["--preset", "ulx3s-85f", "--hidden", "8", "8", "8"],
     r"hidden layers = 3, the build allows 1..2 \(max_layers\) \(the ulx3s-85f preset\)"),
    (["--preset", "pynq-z2", "--lanes", "96", "--draw-lanes", "12"],
     r"bad build \(pynq-z2 preset\): .*draw_lanes must be a power of two dividing lanes"),
])
def test_argument_errors(argv, message, capsys, tmp_path):
    assert main(["verify", "--out", str(tmp_path)] + argv) == 2
    err = capsys.readouterr().err
    assert "xnorlearn verify: error:" in err
    import re
    assert re.search(message, err), err
    assert not any(tmp_path.iterdir()), "something was built before the arguments were checked"


@pytest.mark.parametrize("argv", [["--simulator", "ghdl"], ["--batches", "0"],
                                  ["--hidden", "x"]])
def test_argparse_errors(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(["verify"] + argv)
    assert e.value.code == 2


def test_size_build():
    b = verify.size_build((784, 135, 135), classes=10, gamma=(45, 45), lanes=64, batch_size=100)
    assert b == Build(lanes=64, max_layers=2, max_width=135, max_fan_in=784, classes=10,
                      max_batch=100, max_groups=3, weight_words=135 * 13 + 135 * 3,
                      draw_lanes=16)
    b = verify.size_build((10, 1), classes=2, gamma=(1,), lanes=32, batch_size=1)
    assert b.max_width == 2 and b.weight_words == 1
    with pytest.raises(verify.BuildError, match=r"classes = 17, the limit classes allows 2..16"):
        verify.size_build((10, 8), classes=17, gamma=(8,), lanes=32, batch_size=1)


# -- the comparison ------------------------------------------------------------------------------

def _observation(rng):
    model = FastBMLP(NetworkConfig(sizes=(20, 9, 7), classes=4, gamma=(3, 7), seed=3))
    a0 = np.where(rng.random((5, 20)) < 0.5, 1, -1).astype(np.int8)
    y = rng.integers(0, 4, 5)
    errors = model.train_batch(a0, y)
    return model, observe.expected_observation(model, patterns=5, errors=errors,
                                              train_errors=errors, infer=(a0, y))


def test_compare_finds_the_first_difference(rng):
    model, want = _observation(rng)
    assert observe.compare(want, dataclasses.replace(want)) is None
    got = want.corrupted("H", 1, (4, 2))
    m = observe.compare(want, got, batch=3)
    assert (m.what, m.layer, m.index, m.batch) == ("H", 1, (4, 2), 3)
    assert m.expected == int(model.H[1][4, 2]) and abs(m.got - m.expected) == 2
    assert m.got % 2 == 1
    assert str(m) == (f"after minibatch 3: H layer 1, index (4, 2), expected {m.expected}, "
                      f"got {m.got}")
    # Two differences: the first in checking order is reported.
    got2 = got.corrupted("H", 0, (8, 19))
    assert observe.compare(want, got2).layer == 0
    m = observe.compare(want, want.corrupted("P", 0, (2, 3)))
    assert (m.what, m.index, m.expected, m.got) == ("P", (2, 3), model.P[0][2, 3],
                                                    -model.P[0][2, 3])
    m = observe.compare(want, want.corrupted("prediction", index=(4,)))
    assert (m.what, m.index) == ("prediction", (4,)) and m.got == m.expected + 1
    m = observe.compare(want, want.corrupted("STEP"))
    assert (m.what, m.expected, m.got) == ("STEP", 1, 2)
    m = observe.compare(want, dataclasses.replace(want, train_errors=want.train_errors + 1))
    assert m.what == "TRAIN errors"
    short = dataclasses.replace(want, H=[want.H[0], want.H[1][:, :3]])
    assert observe.compare(want, short).index == "shape"


# -- end to end on Verilator ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def verify_out(tmp_path_factory):
    """One output directory for both runs: the second finds the first one's build."""
    return tmp_path_factory.mktemp("verify")


def test_verify_passes(verify_out, capsys):
    assert main(TINY + ["--out", str(verify_out)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert any(line.startswith("step 2: built and started in") for line in lines)
    assert [line.split(":")[0] for line in lines if line.startswith("minibatch")] == \
        ["minibatch 1/2", "minibatch 2/2"]
    assert "PASS: 2 minibatches" in out and "cycles per minibatch" in out
    report = json.loads((verify_out / "verify.json").read_text())
    assert report["result"] == "pass" and report["network"] == [40, 16, 12]
    assert len(report["cycles_per_minibatch"]) == 2
    assert all(c > 6 * (16 * 2 + 12) for c in report["cycles_per_minibatch"])
    # Back to back, each TRAIN's sweeps run beside the next one: never slower than one
    # at a time, and the same errors.
    queued = report["back_to_back"]
    assert queued["batches"] == 2 and queued["mismatch"] is None
    assert queued["errors"] == [e["errors"] for e in report["minibatches"]]
    assert 6 * (16 * 2 + 12) < report["cycles_per_minibatch_back_to_back"] <= \
        max(report["cycles_per_minibatch"])
    assert any(line.startswith("back to back: ") for line in lines)
    assert 0 < queued["tail"] < queued["cycles"]["CYCLES"]
    assert report["cycles_per_minibatch_steady"] < report["cycles_per_minibatch_back_to_back"]


def test_verify_reports_the_first_mismatch(verify_out, capsys):
    corrupt = {"batch": 2, "what": "H", "layer": 1, "index": [5, 7]}
    args = verify.add_arguments(__import__("argparse").ArgumentParser()).parse_args(
        TINY[1:] + ["--out", str(verify_out)])
    lines = []
    assert verify.run(args, corrupt=corrupt, log=lines.append) == 1
    fail = [line for line in lines if line.startswith("FAIL")]
    assert len(fail) == 1
    assert fail[0].startswith("FAIL: first mismatch after minibatch 2: H layer 1, index (5, 7), "
                              "expected ")
    assert any(line.startswith("minibatch 1/2") and line.endswith("match") for line in lines)
    report = json.loads((verify_out / "verify.json").read_text())
    assert report["result"] == "mismatch"
    assert report["mismatch"]["index"] == [5, 7] and report["mismatch"]["batch"] == 2


def test_preset_build():
    """``--preset`` runs the board's build with the dataset's classes, not the smallest."""
    from xnorlearn.contract import PYNQ_Z2, ULX3S_85F
    parser = argparse.ArgumentParser()
    verify.add_arguments(parser)
    for name, board in (("pynq-z2", PYNQ_Z2), ("ulx3s-85f", ULX3S_85F)):
        args = parser.parse_args(["--preset", name, "--classes", "6", "--features", "100",
                                  "--hidden", "40", "30", "--batches", "1",
                                  "--batch-size", "8"])
        _, build, *_ = verify._prepare(args)
        assert build == dataclasses.replace(board, classes=6)
    args = parser.parse_args(["--preset", "ulx3s-85f", "--lanes", "128", "--features", "100",
                              "--hidden", "40", "--batches", "1", "--batch-size", "8"])
    assert verify._prepare(args)[1].lanes == 128
