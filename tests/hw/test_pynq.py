"""The PYNQ board transport's own code on a simulated PYNQ (:mod:`xnorlearn.sim.pynq_sim`):
bit-exact training against the golden model, and the faults a board gives (a DMA transfer
that never completes, a DMA error, a refused packet, a bitstream of another build, a
missing ``.hwh``, an FCLK0 that does not match), each with its message and the time it
took to surface."""

import json
import os
import shutil
import sys
import time

import numpy as np
import pytest

from xnorlearn.boards.pynq_hwh import write_hwh
from xnorlearn.boards.pynq_overlay import write_overlay_project
from xnorlearn.contract import Build, ErrorCode
from xnorlearn.sim.fastsim import FastSimTransport
from xnorlearn.sim.pynq_sim import SimulatedPynq
from xnorlearn.sim.random_networks import random_batch, random_model
from xnorlearn.sim.runner import default_seed
from xnorlearn.sw.cli import main
from xnorlearn.sw.driver import BuildMismatch, Device, DeviceTimeout, PacketRefused
from xnorlearn.sw.golden import FastBMLP
from xnorlearn.sw.pynq_transport import OverlayError, PynqTransport
from xnorlearn.sw.transport import TransportError

BUILD = Build(lanes=32, max_layers=2, max_width=64, max_fan_in=128, classes=4, max_batch=16,
              max_groups=8)
CLOCK_MHZ = 100.0


def _overlay(out, build=BUILD, clock_mhz=CLOCK_MHZ):
    """An overlay directory as a Vivado run leaves it: the project's JSON, the .hwh
    (written here from the build, as Vivado would) and a .bit."""
    write_overlay_project("pynq-z2", build, out, clock_mhz=clock_mhz)
    write_hwh(out / "xnorlearn.hwh", build, board="pynq-z2", clock_mhz=clock_mhz)
    (out / "xnorlearn.bit").write_bytes(b"\x00" * 64)
    return out / "xnorlearn.bit"


@pytest.fixture(scope="module")
def cache(fastsim_cache):
    return fastsim_cache


@pytest.fixture(scope="module")
def overlay(tmp_path_factory):
    return _overlay(tmp_path_factory.mktemp("overlay"))


@pytest.fixture
def fabric(cache):
    t = FastSimTransport(BUILD, cache_dir=cache, progress=lambda text: None)
    yield t
    t.close()


def _device(overlay, fabric, faults=(), timeout=5.0):
    transport = PynqTransport(overlay, pynq=SimulatedPynq(fabric, faults=faults))
    return Device(transport, build=transport.build, timeout=timeout, cycles_per_second=2e5)


def test_trains_bit_exactly(overlay, fabric):
    rng = np.random.default_rng(default_seed())
    dev = _device(overlay, fabric)
    assert dev.transport.clock_mhz == CLOCK_MHZ
    for _ in range(2):
        model = random_model(rng, BUILD, widths=(8, 64))
        dev.load(model)
        for _ in range(2):
            a0, y = random_batch(rng, model, (1, BUILD.max_batch))
            assert dev.train_batch(a0, y) == model.train_batch(a0, y)
            assert dev.compare_weights(model) is None
        batches = [random_batch(rng, model, (1, BUILD.max_batch)) for _ in range(5)]
        assert dev.train_batches(batches) == [model.train_batch(*b) for b in batches]
        assert dev.compare_weights(model) is None
        preds, _ = dev.infer(*batches[0])
        assert np.array_equal(preds, model.predict(batches[0][0]))


def test_dma_transfer_that_never_completes(overlay, fabric):
    rng = np.random.default_rng(default_seed())
    dev = _device(overlay, fabric, timeout=0.5)
    model = random_model(rng, BUILD, widths=(8, 64))
    dev.load(model)
    dev.transport._pynq.faults.add("mm2s_stuck")
    a0, y = random_batch(rng, model, (2, BUILD.max_batch))
    t0 = time.monotonic()
    with pytest.raises(DeviceTimeout, match=r"TRAIN: .*STATUS .*ERROR_CODE .*soft-reset") as e:
        dev.train_batches([(a0, y), (a0, y)])
    waited = time.monotonic() - t0
    print(f"stuck MM2S: {e.value} ({waited:.2f} s)")
    assert waited < dev._deadline(len(y)) * 2 + 2
    dev.transport._pynq.faults.discard("mm2s_stuck")
    dev.configure(model.config, thresholds=model.thresholds, step=model.step)
    # The first TRAIN may have completed before the stall: read back, then go on.
    dev.read_into(model)
    b = random_batch(rng, model, (1, BUILD.max_batch))
    assert dev.train_batch(*b) == model.train_batch(*b)
    assert dev.compare_weights(model) is None


def test_dma_error_is_reported_and_reset(overlay, fabric):
    rng = np.random.default_rng(default_seed())
    dev = _device(overlay, fabric)
    model = random_model(rng, BUILD, widths=(8, 64))
    dev.load(model)
    dev.transport._pynq.faults.add("s2mm_slverr")
    t0 = time.monotonic()
    with pytest.raises(Exception, match="DMA slave error .*the DMA was reset") as e:
        dev.read_h(0)
    print(f"S2MM slave error: {e.value} ({time.monotonic() - t0:.2f} s)")
    dev.transport._pynq.faults.discard("s2mm_slverr")
    dev.soft_reset()
    assert dev.compare_weights(model) is None


def test_refused_packet(overlay, fabric):
    rng = np.random.default_rng(default_seed())
    dev = _device(overlay, fabric)
    model = random_model(rng, BUILD, widths=(8, 64))
    dev.load(model)
    dev.write("WIDTH_0", 0)
    t0 = time.monotonic()
    with pytest.raises(PacketRefused, match="CONFIG") as e:
        dev.read_p(0)
    print(f"refused: {e.value} ({time.monotonic() - t0:.2f} s)")
    assert e.value.code == ErrorCode.CONFIG
    dev.configure(model.config, thresholds=model.thresholds, step=model.step)
    assert dev.compare_weights(model) is None


def test_bitstream_of_another_build(tmp_path, fabric):
    other = Build(lanes=32, max_layers=2, max_width=64, max_fan_in=128, classes=4,
                  max_batch=32, max_groups=8)
    bit = _overlay(tmp_path / "other", build=other)
    transport = PynqTransport(bit, pynq=SimulatedPynq(fabric))
    with pytest.raises(BuildMismatch, match="max_batch: bitstream 16, expected 32"):
        Device(transport, build=transport.build)


def test_missing_hwh_and_fclk_mismatch(tmp_path, overlay, fabric):
    broken = tmp_path / "broken"
    shutil.copytree(overlay.parent, broken)
    (broken / "xnorlearn.hwh").unlink()
    with pytest.raises(OverlayError, match=r"missing xnorlearn.hwh"):
        PynqTransport(broken / "xnorlearn.bit", pynq=SimulatedPynq(fabric))
    with pytest.raises(OverlayError, match=r"FCLK0 runs at 50.000 MHz, the build was made "
                                           r"for 100.000 MHz"):
        PynqTransport(overlay, pynq=SimulatedPynq(fabric, faults={"fclk0=50"}))


def test_cli_trains_on_the_simulated_pynq(tmp_path, overlay, cache, monkeypatch):
    """``xnorlearn train --device pynq --overlay ...`` with the simulated PYNQ in place of
    the pynq package: the same outputs as the golden model."""
    fabric = FastSimTransport(BUILD, cache_dir=cache, progress=lambda text: None)
    monkeypatch.setitem(sys.modules, "pynq", SimulatedPynq(fabric))
    common = ["train", "--dataset", "synthetic", "--hidden", "24", "16", "--batch-size", "16",
              "--train-limit", "96", "--test-limit", "32", "--seed", "5", "--quiet",
              "--epochs", "2"]
    try:
        assert main(common + ["--out", str(tmp_path / "g"), "--device", "golden"]) == 0
        assert main(common + ["--out", str(tmp_path / "p"), "--device", "pynq",
                              "--overlay", str(overlay)]) == 0
    finally:
        fabric.close()
    g = json.loads((tmp_path / "g" / "metrics.json").read_text())
    p = json.loads((tmp_path / "p" / "metrics.json").read_text())
    assert [e["test_accuracy"] for e in g["epochs"]] == [e["test_accuracy"] for e in p["epochs"]]
    assert FastBMLP.load(tmp_path / "g" / "model.npz").same_state(
        FastBMLP.load(tmp_path / "p" / "model.npz")) is None
    assert p["device"] == "pynq" and "cycles" in p["epochs"][0]
