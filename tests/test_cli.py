import json
import subprocess
import sys

import numpy as np
import pytest

from xnorlearn.sw.cli import main
from xnorlearn.sw.golden import FastBMLP

SMALL = ["train", "--device", "golden", "--dataset", "synthetic", "--hidden", "24", "12",
         "--gamma", "6", "6", "--batch-size", "50",
         "--quiet"]


def test_train_writes_metrics_model_and_plot(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(SMALL + ["--epochs", "4", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "epoch   4/4" in text and "test accuracy" in text
    metrics = json.loads((out / "metrics.json").read_text())
    assert [m["epoch"] for m in metrics["epochs"]] == [1, 2, 3, 4]
    for m in metrics["epochs"]:
        assert {"epoch", "train_error", "test_accuracy", "seconds"} <= set(m)
    # the generated dataset is easy: a working learner is far above chance (25%)
    assert metrics["epochs"][-1]["test_accuracy"] > 0.9
    assert (out / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    model = FastBMLP.load(out / "model.npz")
    assert model.epoch == 4 and model.config.sizes == (64, 24, 12)


def test_resume_equals_uninterrupted(tmp_path, capsys):
    main(SMALL + ["--epochs", "3", "--out", str(tmp_path / "a"), "--seed", "5"])
    main(SMALL + ["--epochs", "1", "--out", str(tmp_path / "b"), "--seed", "5"])
    main(SMALL + ["--epochs", "3", "--out", str(tmp_path / "b"), "--seed", "5",
                  "--resume", str(tmp_path / "b" / "model.npz")])
    a = FastBMLP.load(tmp_path / "a" / "model.npz")
    b = FastBMLP.load(tmp_path / "b" / "model.npz")
    assert a.same_state(b) is None
    ma = json.loads((tmp_path / "a" / "metrics.json").read_text())["epochs"]
    mb = json.loads((tmp_path / "b" / "metrics.json").read_text())["epochs"]
    assert [m["test_accuracy"] for m in ma] == [m["test_accuracy"] for m in mb]


@pytest.mark.parametrize("args,message", [
    (["--hidden", "0"], "expected a positive integer"),
    (["--hidden", "24", "--gamma", "7"], "does not divide layer width 24"),
    (["--dataset", "nope"], "unknown dataset 'nope'"),
    (["--dataset", "mnist", "--data-dir", "/nonexistent"], "mnist not found"),
    (["--seed", "-3"], r"--seed must be in 0..4294967295"),
    (["--h-bits", "1"], "h_bits must be 2..31"),
    (["--device", "fpga"], "invalid choice: 'fpga'"),
    (["--device", "pynq"], "--device pynq needs --overlay"),
    (["--device", "ulx3s"], "--device ulx3s needs --port"),
    (["--device", "sim", "--hidden", "300"], "width of layer 0 = 300, the build allows 1..256"),
    (["--device", "sim", "--batch-size", "200"], "patterns per minibatch = 200, the build "
                                                 "allows 1..128 (max_batch)"),
    (["--device", "sim", "--lanes", "48"], "bad build parameter: lanes must be a multiple"),
    (["--device", "sim", "--lanes", "96", "--draw-lanes", "12"],
     "draw_lanes must be a power of two dividing lanes"),
    (["--device", "sim", "--clock-mhz", "0"], "--clock-mhz must be in (0, 1000)"),
    (["--device", "sim", "--preset", "arty"], "invalid choice: 'arty'"),
    (["--device", "sim", "--preset", "ulx3s-85f", "--hidden", "8", "8", "8"],
     "hidden layers = 3, the build allows 1..2"),
    (["--resume", "/nonexistent/model.npz"], "is not a file"),
    (["--epochs", "x"], "expected a positive integer"),
])
def test_bad_arguments_fail_fast(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as e:
        main(["train", "--device", "golden", "--dataset", "synthetic", "--quiet",
              "--out", str(tmp_path)] + args)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_the_device_is_the_board_named_else_the_simulated_board(tmp_path, capsys):
    """Without --device: the simulated accelerator (a network too big for its build is
    refused before anything runs), or the board that --overlay / --port names."""
    base = ["train", "--dataset", "synthetic", "--hidden", "8", "--quiet"]
    with pytest.raises(SystemExit) as e:
        main(base + ["--preset", "ulx3s-85f", "--hidden", "8", "8", "8",
                     "--out", str(tmp_path / "sim")])
    assert e.value.code == 2 and "hidden layers = 3, the build allows 1..2" in \
        capsys.readouterr().err
    assert main(base + ["--overlay", str(tmp_path / "none.bit"),
                        "--out", str(tmp_path / "pynq")]) != 0
    assert "the pynq device failed" in capsys.readouterr().err
    assert main(base + ["--port", str(tmp_path / "tty"), "--out", str(tmp_path / "ulx3s")]) != 0
    assert "the ulx3s device failed: cannot open serial port" in capsys.readouterr().err


def test_console_script_runs():
    r = subprocess.run([sys.executable, "-m", "xnorlearn.sw.cli", "train", "--help"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "--hidden" in r.stdout
