"""notebooks/train_on_fpga.ipynb: in step with its script, and executed (short run) on the
simulated board, bit-exact with the golden model."""

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_notebook_matches_its_script():
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gen_notebook.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_notebook_runs_on_the_simulated_board(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("XNORLEARN_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("XNORLEARN_NOTEBOOK_OUT", str(tmp_path / "out"))
    monkeypatch.setenv("XNORLEARN_OVERLAY", str(tmp_path / "no-board.bit"))
    nb = nbformat.read(ROOT / "notebooks" / "train_on_fpga.ipynb", as_version=4)
    client = nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    text, images = [], 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out.get("output_type") != "error", "".join(out.get("traceback", []))
            if out.get("output_type") == "stream":
                text.append(out["text"])
            data = out.get("data", {})
            if "image/png" in data:
                assert base64.b64decode(data["image/png"])[:4] == b"\x89PNG"
                images += 1
            if "text/plain" in data:
                text.append(data["text/plain"])
    text = "".join(text)
    assert "device: fast simulated board" in text
    assert "bit-exact: all" in text and "MISMATCH" not in text
    assert images >= 3, f"{images} figures (live accuracy, confusion matrix, predictions)"
    for name in ("metrics.json", "model.npz", "confusion.png", "predictions.png"):
        assert (tmp_path / "out" / name).is_file(), name
