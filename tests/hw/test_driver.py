"""The host driver on the simulated board: training bit-exact with the golden model (with
and without bus stalls, one packet at a time and queued), refused packets, timeouts that
leave the device usable, a board that dies or hangs, a build that does not match, and
``xnorlearn train --device sim`` (outputs, resume, golden check)."""

import dataclasses
import json
import os
import signal
import time

import numpy as np
import pytest

from xnorlearn.contract import Build, ErrorCode
from xnorlearn.sim.fastsim import FastSimTransport
from xnorlearn.sim.random_networks import random_batch, random_model
from xnorlearn.sim.runner import default_seed
from xnorlearn.sw import protocol
from xnorlearn.sw.cli import main
from xnorlearn.sw.driver import (BuildMismatch, Device, DeviceError, DeviceModel, DeviceTimeout,
                                 PacketRefused)
from xnorlearn.sw.golden import FastBMLP, NetworkConfig
from xnorlearn.sw.transport import TransportError

BUILD = Build(lanes=32, max_layers=2, max_width=64, max_fan_in=128, classes=4, max_batch=16,
              max_groups=8)


@pytest.fixture(scope="module")
def cache(fastsim_cache):
    return fastsim_cache


@pytest.fixture
def board(cache):
    transport = FastSimTransport(BUILD, cache_dir=cache, progress=lambda text: None)
    yield transport
    transport.close()


def _open(transport, build=BUILD, **kw):
    return Device(transport, build=build, timeout=5.0, cycles_per_second=2e5, **kw)


@pytest.mark.parametrize("stalls", [0.0, 0.3])
@pytest.mark.parametrize("fwd_patterns", [1, 3])
def test_random_networks_match_the_golden_model(cache, stalls, fwd_patterns):
    """Random networks (layers, widths, gamma, weights with saturation corners,
    thresholds, STEP): every weight after every minibatch, one packet at a time and
    queued, equal to the golden model's; with the forward pass on one pattern at a time
    and on three in lockstep (minibatches of 1..16 patterns: partial groups)."""
    rng = np.random.default_rng([default_seed(), int(stalls * 10), fwd_patterns])
    checked = 0
    build = dataclasses.replace(BUILD, fwd_patterns=fwd_patterns)
    with FastSimTransport(build, cache_dir=cache, idle=stalls, backpressure=stalls,
                          seed=int(rng.integers(1 << 32)), progress=lambda t: None) as t:
        dev = _open(t, build)
        for _ in range(4):
            model = random_model(rng, BUILD, widths=(8, 64))
            dev.load(model)
            assert dev.compare_weights(model) is None
            for _ in range(3):
                a0, y = random_batch(rng, model, (1, BUILD.max_batch))
                assert dev.train_batch(a0, y) == model.train_batch(a0, y)
                mismatch = dev.compare_weights(model)
                assert mismatch is None, f"{model.config.sizes}: {mismatch}"
                checked += 1
            batches = [random_batch(rng, model, (1, BUILD.max_batch)) for _ in range(4)]
            assert dev.train_batches(batches) == [model.train_batch(*b) for b in batches]
            assert dev.compare_weights(model) is None
            checked += len(batches)
            preds, errors = dev.infer(*batches[0])
            want = model.predict(batches[0][0])
            assert np.array_equal(preds, want)
            assert errors == int(np.count_nonzero(want != batches[0][1]))
            assert dev.read("STEP") == model.step & 0xFFFFFFFF
    assert checked == 4 * 7


def test_read_into_gives_the_whole_state(board):
    rng = np.random.default_rng(default_seed())
    dev = _open(board)
    model = random_model(rng, BUILD, widths=(8, 64))
    dev.load(model)
    copy = FastBMLP(model.config)
    dev.read_into(copy)
    for l in range(model.config.layers):
        assert np.array_equal(copy.H[l], model.H[l])
        assert np.array_equal(copy.P[l], model.P[l])
        assert np.array_equal(copy.theta[l], model.theta[l])
        assert np.array_equal(copy.flip[l], model.flip[l])
    assert copy.step == model.step & 0xFFFFFFFF


def test_identity_checked(board):
    dev = _open(board)
    assert dev.build == BUILD
    other = Build(lanes=32, max_layers=2, max_width=64, max_fan_in=128, classes=4,
                  max_batch=32, max_groups=8)
    with pytest.raises(BuildMismatch, match="max_batch: bitstream 16, expected 32"):
        Device(board, build=other)
    assert Device(board).build.max_batch == 16      # read from BUILD0..3


def test_network_that_does_not_fit_is_refused_before_anything_is_written(board):
    dev = _open(board)
    for sizes, gamma, match in [((129, 8), (8,), r"inputs K_0 = 129, the build allows 1..128"),
                                ((16, 65), (65,), r"width of layer 0 = 65"),
                                ((16, 8, 8, 8), (8, 8, 8), r"hidden layers = 3"),
                                ((16, 64), (4,), r"groups of layer 0 .* = 16, the build "
                                                 r"allows 1..8")]:
        cfg = NetworkConfig(sizes=sizes, classes=4, gamma=gamma)
        with pytest.raises(ValueError, match=match):
            dev.configure(cfg, thresholds=[0] * cfg.layers)
    with pytest.raises(ValueError, match="the build allows 1..16"):
        dev.check_fits(NetworkConfig(sizes=(16, 8), classes=4, gamma=(8,)), batch_size=17)


def test_refused_packet_raises_the_named_error_and_changes_nothing(board):
    rng = np.random.default_rng(default_seed())
    dev = _open(board)
    model = random_model(rng, BUILD, widths=(8, 64))
    dev.load(model)
    offsets = dev.regmap.offsets()
    for reg, value, code in [("WIDTH_0", 0, ErrorCode.CONFIG),
                             ("LAYERS", BUILD.max_layers + 1, ErrorCode.CONFIG)]:
        board.write32(offsets[reg], value, timeout=5)
        t0 = time.monotonic()
        with pytest.raises(PacketRefused, match=code.name) as e:
            dev.train_batch(*random_batch(rng, model, (1, BUILD.max_batch)))
        assert e.value.code == code
        assert time.monotonic() - t0 < 5
        st = dev.status()
        assert not st.error and not st.busy, st
        dev.configure(model.config, thresholds=model.thresholds, step=model.step)
        assert dev.compare_weights(model) is None
    # A packet of the wrong length, sent raw, is refused with LENGTH; the driver recovers.
    a0, y = random_batch(rng, model, (2, BUILD.max_batch))
    packet = protocol.train_packet(a0, y, classes=4)
    board.send(np.concatenate([packet, [0]]).astype(np.uint32), timeout=5)
    with pytest.raises(PacketRefused, match="LENGTH"):
        dev._recv(1, "TRAIN")
    assert dev.compare_weights(model) is None
    assert dev.train_batch(a0, y) == model.train_batch(a0, y)
    assert dev.compare_weights(model) is None


def test_timeout_reports_status_and_leaves_the_device_usable(board):
    """A response that never comes (a WRITE_P, which has none, waited on as a request):
    the driver gives up at its deadline with STATUS and ERROR_CODE in the message,
    soft-resets, and training goes on."""
    rng = np.random.default_rng(default_seed())
    dev = Device(board, build=BUILD, timeout=0.5, cycles_per_second=1e9)
    model = random_model(rng, BUILD, widths=(8, 64))
    dev.load(model)
    t0 = time.monotonic()
    with pytest.raises(DeviceTimeout, match=r"no response within .*STATUS busy=0 error=0 "
                                            r"reinforcing=0 phase=IDLE, ERROR_CODE NONE; "
                                            r"the device was soft-reset"):
        dev._request(protocol.write_p_packet(0, model.P[0]), 1, "WRITE_P")
    waited = time.monotonic() - t0
    assert dev._deadline(1) <= waited < dev._deadline(1) + 2, waited
    st = dev.status()
    assert not st.busy and not st.error, st
    assert dev.compare_weights(model) is None
    assert dev.read("STEP") == model.step & 0xFFFFFFFF      # kept across the soft reset
    a0, y = random_batch(rng, model, (1, BUILD.max_batch))
    assert dev.train_batch(a0, y) == model.train_batch(a0, y)
    assert dev.compare_weights(model) is None


@pytest.mark.parametrize("how", ["killed", "stopped"])
def test_board_that_dies_or_hangs_mid_packet(cache, how):
    rng = np.random.default_rng(default_seed())
    t = FastSimTransport(BUILD, cache_dir=cache, grace=2.0, progress=lambda text: None)
    try:
        dev = Device(t, build=BUILD, timeout=2.0, cycles_per_second=1e6)
        model = random_model(rng, BUILD, widths=(8, 64))
        dev.load(model)
        a0, y = random_batch(rng, model, (BUILD.max_batch, BUILD.max_batch))
        t.send(protocol.train_packet(a0, y, classes=4)[:10], timeout=5)
        os.kill(t._proc.pid, signal.SIGKILL if how == "killed" else signal.SIGSTOP)
        t0 = time.monotonic()
        with pytest.raises((DeviceError, TransportError)) as e:
            dev.train_batch(a0, y)
        waited = time.monotonic() - t0
        assert waited < dev._deadline(len(y)) + t.grace + 5, waited
        assert "simulat" in str(e.value)
    finally:
        if how == "stopped" and t._proc is not None:
            try:
                os.kill(t._proc.pid, signal.SIGCONT)
            except ProcessLookupError:      # the transport killed it, as it should
                pass
        t.close()
    # The next open works.
    with FastSimTransport(BUILD, cache_dir=cache, progress=lambda text: None) as t2:
        dev = _open(t2)
        dev.load(model)
        assert dev.train_batch(a0, y) == model.train_batch(a0, y)
        assert dev.compare_weights(model) is None


def test_device_model_checks_against_the_golden_model(board):
    rng = np.random.default_rng(default_seed())
    dev = _open(board)
    model = random_model(rng, BUILD, widths=(8, 64))
    shadow = FastBMLP(model.config).copy_state_from(model)
    dm = DeviceModel(dev, shadow, golden_check=True, check_every=2)
    batches = [random_batch(rng, model, (1, BUILD.max_batch)) for _ in range(5)]
    dm.train_batches(batches)
    assert dm.checks == 2
    assert [model.train_batch(*b) for b in batches]
    assert dev.compare_weights(model) is None
    # A weight changed behind the golden model's back is found by the next check.
    h = model.H[0].copy()
    h[0, 0] = -h[0, 0]
    dev.transport.send(protocol.write_h_packet(0, h), timeout=5)
    dev.transport.wait_sent(timeout=5)
    with pytest.raises(DeviceError, match=r"H layer 0, index \(0, 0\)"):
        dm.check()


def test_device_model_recovers_the_golden_state(board):
    """A minibatch that fails on the device (here refused: a configuration register
    overwritten behind the driver's back) leaves the device reloaded with the golden
    model's state, so the run can go on."""
    rng = np.random.default_rng(default_seed())
    dev = _open(board)
    model = random_model(rng, BUILD, widths=(8, 64))
    dm = DeviceModel(dev, FastBMLP(model.config).copy_state_from(model), golden_check=True)
    batches = [random_batch(rng, model, (1, BUILD.max_batch)) for _ in range(3)]
    dm.train_batches(batches[:2])
    board.write32(dev.regmap.offsets()["WIDTH_0"], 0, timeout=5)
    with pytest.raises(DeviceError, match=r"CONFIG.*reloaded with the golden model's state "
                                          r"after minibatch 2"):
        dm.train_batch(*batches[2])
    assert dev.compare_weights(dm.shadow) is None
    assert dev.read("STEP") == dm.shadow.step & 0xFFFFFFFF
    dm.train_batch(*batches[2])         # the golden model beside it checks the errors
    assert dm.shadow.step == model.step + 3
    assert dev.compare_weights(dm.shadow) is None


def _train(tmp_path, name, *extra):
    out = tmp_path / name
    argv = ["train", "--device", "golden", "--dataset", "synthetic", "--hidden", "24", "16",
            "--batch-size", "16",
            "--train-limit", "160", "--test-limit", "64", "--seed", "3", "--quiet",
            "--out", str(out), *extra]
    assert main(argv) == 0
    return json.loads((out / "metrics.json").read_text()), out


def test_cli_sim_matches_golden_and_resumes_bit_exactly(tmp_path, monkeypatch, cache):
    monkeypatch.setenv("XNORLEARN_CACHE", cache)
    sim_args = ["--device", "sim", "--lanes", "32", "--max-layers", "2", "--max-width", "64",
                "--max-fan-in", "128", "--max-batch", "16", "--max-groups", "8",
                "--check-every", "3"]
    golden, _ = _train(tmp_path, "golden", "--epochs", "2")
    sim, out = _train(tmp_path, "sim", "--epochs", "2", *sim_args)
    for g, s in zip(golden["epochs"], sim["epochs"]):
        assert g["test_accuracy"] == s["test_accuracy"]
        assert g["train_error"] == s["train_error"]
        assert s["cycles"]["CYCLES"] == sum(s["cycles"][k] for k in s["cycles"] if k != "CYCLES")
        assert s["fpga_samples_per_second"] > 0
    assert sim["build"]["lanes"] == 32 and sim["golden_check"] is True
    for name in ("model.npz", "accuracy.png"):
        assert (out / name).is_file()
    # One epoch, then resumed to two on the device: the same state as two in one go.
    _train(tmp_path, "resumed", "--epochs", "1", *sim_args)
    _train(tmp_path, "resumed", "--epochs", "2", "--resume",
           str(tmp_path / "resumed" / "model.npz"), *sim_args)
    a = FastBMLP.load(out / "model.npz")
    b = FastBMLP.load(tmp_path / "resumed" / "model.npz")
    assert a.same_state(b) is None
    assert FastBMLP.load(tmp_path / "golden" / "model.npz").same_state(a) is None


def test_cli_refuses_a_network_that_does_not_fit(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--device", "sim", "--dataset", "synthetic", "--hidden", "300",
              "--max-width", "256", "--out", str(tmp_path)])
    assert e.value.code == 2
    assert "width of layer 0 = 300, the build allows 1..256 (max_width)" in capsys.readouterr().err


#: Builds of the long regression (as the cocotb regression's, tests/hw/test_accelerator.py).
SLOW_BUILDS = [
    Build(lanes=64, max_layers=3, max_width=48, max_fan_in=72, classes=10, max_batch=16,
          max_groups=8, draw_lanes=16),
    Build(lanes=32, max_layers=3, max_width=200, max_fan_in=200, classes=16, max_batch=128,
          max_groups=16, draw_lanes=16),
    Build(lanes=64, max_layers=3, max_width=200, max_fan_in=200, classes=2, max_batch=128,
          max_groups=25, draw_lanes=32),
    Build(lanes=32, max_layers=2, max_width=160, max_fan_in=200, classes=10, max_batch=128,
          max_groups=16, draw_lanes=32, fwd_patterns=7),
]


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(SLOW_BUILDS)))
def test_many_random_networks(cache, index):
    """At least 1,000 random networks x minibatches over the four builds (the last with
    the forward pass on 7 patterns at once), every weight
    compared with the golden model after every minibatch, a third of them with stalls."""
    build = SLOW_BUILDS[index]
    rng = np.random.default_rng([default_seed(), index, 0x5EED])
    networks = minibatches = 0
    t0 = time.monotonic()
    with FastSimTransport(build, cache_dir=cache, progress=lambda text: None) as t:
        dev = Device(t, build=build, timeout=10.0, cycles_per_second=2e5)
        while minibatches < 340:
            stalls = 0.3 if networks % 3 == 2 else 0.0
            t.set_stalls(idle=stalls, backpressure=stalls, seed=int(rng.integers(1 << 32)))
            model = random_model(rng, build, widths=(8, min(200, build.max_width)))
            dev.load(model)
            assert dev.compare_weights(model) is None
            for _ in range(int(rng.integers(1, 6))):
                a0, y = random_batch(rng, model, (1, build.max_batch))
                assert dev.train_batch(a0, y) == model.train_batch(a0, y)
                mismatch = dev.compare_weights(model, batch=minibatches)
                assert mismatch is None, f"{model.config.sizes} {model.config.gamma}: {mismatch}"
                minibatches += 1
            networks += 1
    print(f"build {index}: {networks} networks, {minibatches} minibatches, all equal to the "
          f"golden model ({time.monotonic() - t0:.0f} s)")
