"""The fast simulated board (xnorlearn.sim.fastsim): registers, packets, training against
the golden model with and without stalls, errors, deadlines, a dead or stopped simulator,
and the build cache (one small build per session, made by two concurrent processes)."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from xnorlearn.contract import Build, RegisterMap
from xnorlearn.sim.fastsim import FastSimTransport, build_fastsim
from xnorlearn.sim.runner import default_seed
from xnorlearn.sw import protocol
from xnorlearn.sw.golden.config import NetworkConfig
from xnorlearn.sw.golden.fast import FastBMLP
from xnorlearn.sw.driver import Device
from xnorlearn.sw.golden import prng
from xnorlearn.sw.transport import TransportError, TransportTimeout

BUILD = Build(lanes=32, max_layers=2, max_width=64, max_fan_in=128, classes=6, max_batch=16,
              max_groups=8)
REGMAP = RegisterMap(BUILD)
OFFSETS = REGMAP.offsets()
T = 30.0        # timeout of a call that should succeed
QUIET = dict(progress=lambda line: None)

_BUILD_SCRIPT = """
import json, sys, time
from xnorlearn.contract import Build
from xnorlearn.sim.fastsim import build_fastsim
lines = []
exe = build_fastsim(Build(**json.loads(sys.argv[1])), cache_dir=sys.argv[2],
                    progress=lines.append)
print(json.dumps({"exe": str(exe), "lines": lines}))
"""


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """The session's cache, built by two processes started together into an empty cache;
    ``{"cache", "exe", "runs"}`` (``runs``: what each process reported)."""
    cache = tmp_path_factory.mktemp("fastsim-cache")
    params = json.dumps({k: v for k, v in vars(BUILD).items()})
    procs = [subprocess.Popen([sys.executable, "-c", _BUILD_SCRIPT, params, str(cache)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    runs = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"a concurrent build failed:\n{err[-3000:]}"
        runs.append(json.loads(out.strip().splitlines()[-1]))
    return {"cache": cache, "exe": runs[0]["exe"], "runs": runs}


@pytest.fixture
def board(built):
    with FastSimTransport(BUILD, cache_dir=built["cache"], **QUIET) as t:
        yield t


# -- host side of the tests -------------------------------------------------------------------

def load(t, model):
    """Configuration, H, P and T of ``model`` through the host driver."""
    Device(t, build=BUILD, timeout=T).load(model)


def read_h(t, model, l):
    k, fan_in = model.config.sizes[l + 1], model.config.sizes[l]
    t.send(protocol.read_h_packet(l, k), timeout=T)
    words = t.recv(k * -(-fan_in // 4), timeout=T)
    return protocol.parse_read_response(protocol.Opcode.READ_H, words, width=k, fan_in=fan_in)


def read_p(t, model, l):
    k = model.config.sizes[l + 1]
    t.send(protocol.read_p_packet(l, k), timeout=T)
    return protocol.parse_read_response(protocol.Opcode.READ_P, t.recv(k, timeout=T), width=k,
                                        classes=model.config.classes)


def random_model(rng):
    """A random FastBMLP that fits BUILD: weights with saturation corners, thresholds,
    reinforcement thresholds and STEP."""
    layers = int(rng.integers(1, BUILD.max_layers + 1))
    sizes = [int(rng.integers(8, BUILD.max_fan_in + 1))]
    gamma = []
    for _ in range(layers):
        k = int(rng.integers(8, BUILD.max_width + 1))
        ok = [d for d in range(1, k + 1) if k % d == 0 and -(-k // d) <= BUILD.max_groups]
        sizes.append(k)
        gamma.append(int(rng.choice(ok)))
    cfg = NetworkConfig(sizes=tuple(sizes), classes=BUILD.classes, gamma=tuple(gamma),
                        r=float(rng.choice([0.0, 0.25, 1.0])), h_bits=BUILD.h_bits,
                        seed=int(rng.integers(1 << 32)))
    model = FastBMLP(cfg)
    h_max = cfg.h_max
    for l in range(layers):
        shape = model.H[l].shape
        model.H[l] = np.where(rng.random(shape) < 0.2,
                              rng.choice([-h_max, h_max], size=shape),
                              2 * rng.integers(-3, 3, size=shape) + 1).astype(np.int32)
        if rng.random() < 0.5:
            model.theta[l] = rng.integers(-4, 5, size=sizes[l + 1]).astype(np.int32)
            model.flip[l] = rng.random(sizes[l + 1]) < 0.2
    model._sync()
    model.thresholds = [int(rng.integers(0, prng.DRAW_ONE + 1)) for _ in range(layers)]
    model.step = int(rng.integers(0, 1 << 20))
    return model


def random_batch(rng, model):
    bs = int(rng.integers(1, BUILD.max_batch + 1))
    a0 = np.where(rng.random((bs, model.config.sizes[0])) < 0.5, 1, -1).astype(np.int8)
    return a0, rng.integers(0, model.config.classes, size=bs)


# -- registers and packets --------------------------------------------------------------------

def test_identity(board):
    words = {name: board.read32(OFFSETS[name], timeout=T)
             for name in ("ID", "VERSION", "BUILD0", "BUILD1", "BUILD2", "BUILD3")}
    REGMAP.check_build(words)
    for name, word in words.items():
        assert word == REGMAP.const_value(name), f"{name} = {word:#x}"


def test_register_write_reads_back(board):
    for name, value in (("STEP", 0xDEADBEEF), ("KEY_1", 0x12345678), ("STEP", 7)):
        board.write32(OFFSETS[name], value, timeout=T)
        assert board.read32(OFFSETS[name], timeout=T) == value, name


def test_write_h_read_h_round_trip(board):
    rng = np.random.default_rng([default_seed(), 1])
    model = random_model(rng)
    load(board, model)
    for l in range(model.config.layers):
        np.testing.assert_array_equal(read_h(board, model, l), model.H[l])
        np.testing.assert_array_equal(read_p(board, model, l), model.P[l])


@pytest.mark.parametrize("idle, backpressure", [(0.0, 0.0), (0.3, 0.4)])
def test_train_matches_golden(built, idle, backpressure):
    """TRAIN of random networks: the error counts, the predictions of an INFER after each
    minibatch, then H and P read back, and the counters equal the golden model's."""
    rng = np.random.default_rng([default_seed(), 2, int(idle * 10)])
    with FastSimTransport(BUILD, cache_dir=built["cache"], idle=idle, backpressure=backpressure,
                          seed=default_seed(), **QUIET) as t:
        for _ in range(3):
            model = random_model(rng)
            load(t, model)
            patterns0 = t.read32(OFFSETS["PATTERNS"], timeout=T)
            errors0 = t.read32(OFFSETS["ERRORS"], timeout=T)
            patterns = errors = 0
            for _ in range(3):
                a0, y = random_batch(rng, model)
                c0 = t.cycles
                t.send(protocol.train_packet(a0, y, classes=model.config.classes), timeout=T)
                got = protocol.parse_train_response(t.recv(1, timeout=T), len(y))
                assert t.cycles > c0
                want = model.train_batch(a0, y)
                assert got == want, f"{model.config.sizes}: {got} errors, golden {want}"
                patterns += len(y)
                errors += want
                a0, y = random_batch(rng, model)
                t.send(protocol.infer_packet(a0, y, classes=model.config.classes), timeout=T)
                preds, wrong = protocol.parse_infer_response(
                    t.recv(len(y) + 1, timeout=T), len(y), classes=model.config.classes)
                np.testing.assert_array_equal(preds, model.predict(a0))
                assert wrong == int(np.sum(model.predict(a0) != y))
            for l in range(model.config.layers):
                np.testing.assert_array_equal(read_h(t, model, l), model.H[l],
                                              err_msg=f"H of layer {l}, {model.config.sizes}")
                np.testing.assert_array_equal(read_p(t, model, l), model.P[l],
                                              err_msg=f"P of layer {l}, {model.config.sizes}")
            assert t.read32(OFFSETS["STEP"], timeout=T) == model.step & 0xFFFFFFFF
            assert t.read32(OFFSETS["PATTERNS"], timeout=T) - patterns0 == patterns
            assert t.read32(OFFSETS["ERRORS"], timeout=T) - errors0 == errors


# -- errors and deadlines ---------------------------------------------------------------------

def test_slverr_is_an_error(board):
    unmapped = next(o for o in range(0, 4096, 4) if o not in OFFSETS.values())
    with pytest.raises(TransportError, match="SLVERR") as e:
        board.read32(unmapped, timeout=T)
    assert not isinstance(e.value, TransportTimeout)
    with pytest.raises(TransportError, match="SLVERR"):
        board.write32(OFFSETS["ID"], 1, timeout=T)
    assert board.read32(OFFSETS["ID"], timeout=T) == REGMAP.const_value("ID")


def test_recv_timeout_keeps_the_board(board):
    for timeout in (0.0, 0.3):
        start = time.monotonic()
        with pytest.raises(TransportTimeout):
            board.recv(1, timeout=timeout)
        assert time.monotonic() - start < timeout + 0.5
    assert board.read32(OFFSETS["ID"], timeout=T) == REGMAP.const_value("ID")


def test_response_longer_than_max_words(board):
    rng = np.random.default_rng([default_seed(), 3])
    model = random_model(rng)
    load(board, model)
    k = model.config.sizes[1]
    board.send(protocol.read_p_packet(0, k), timeout=T)
    with pytest.raises(TransportError, match="longer than max_words"):
        board.recv(k - 1, timeout=T)
    np.testing.assert_array_equal(read_p(board, model, 0), model.P[0])


def test_reset_drops_queued_packets(board):
    rng = np.random.default_rng([default_seed(), 4])
    model = random_model(rng)
    load(board, model)
    k = model.config.sizes[1]
    board.send(protocol.read_p_packet(0, k), timeout=T)
    board.reset()
    board.wait_sent(timeout=T)
    with pytest.raises(TransportTimeout):
        board.recv(k, timeout=0.2)
    np.testing.assert_array_equal(read_p(board, model, 0), model.P[0])


def test_killed_simulator(built):
    t = FastSimTransport(BUILD, cache_dir=built["cache"], **QUIET)
    try:
        os.kill(t.pid, signal.SIGKILL)
        with pytest.raises(TransportError, match="SIGKILL") as e:
            t.read32(OFFSETS["ID"], timeout=T)
        assert not isinstance(e.value, TransportTimeout)
        with pytest.raises(TransportError, match="gone"):
            t.recv(1, timeout=T)
    finally:
        t.close()


def test_stopped_simulator(built):
    grace, timeout = 1.0, 0.5
    t = FastSimTransport(BUILD, cache_dir=built["cache"], grace=grace, **QUIET)
    try:
        pid = t.pid
        os.kill(pid, signal.SIGSTOP)
        start = time.monotonic()
        with pytest.raises(TransportError, match="stopped") as e:
            t.read32(OFFSETS["ID"], timeout=timeout)
        assert time.monotonic() - start < timeout + grace + 2.0
        assert not isinstance(e.value, TransportTimeout)
        assert t.pid is not None    # still open, but every call now fails
        with pytest.raises(TransportError):
            t.read32(OFFSETS["ID"], timeout=T)
    finally:
        t.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_bad_parameters_raise_before_building(tmp_path):
    with pytest.raises(ValueError, match="draw_lanes must be a power of two"):
        build_fastsim(Build(lanes=96, draw_lanes=12), cache_dir=tmp_path, **QUIET)
    with pytest.raises(TypeError, match="Build"):
        build_fastsim({"lanes": 64}, cache_dir=tmp_path, **QUIET)
    with pytest.raises(ValueError, match="idle"):
        FastSimTransport(BUILD, cache_dir=tmp_path, idle=1.0, **QUIET)
    with pytest.raises(ValueError, match="seed"):
        FastSimTransport(BUILD, cache_dir=tmp_path, seed=-1, **QUIET)
    assert not any(tmp_path.iterdir())


def test_bad_arguments(board):
    for call, match in ((lambda: board.read32(2, timeout=T), "multiple of 4"),
                        (lambda: board.read32(4096, timeout=T), "offset"),
                        (lambda: board.write32(0, 1 << 32, timeout=T), "value"),
                        (lambda: board.recv(0, timeout=T), "max_words"),
                        (lambda: board.recv(1, timeout=-1), "timeout"),
                        (lambda: board.send([], timeout=T), "non-empty")):
        with pytest.raises(ValueError, match=match):
            call()


# -- the build cache --------------------------------------------------------------------------

def test_concurrent_builds(built):
    """Both processes of the session fixture built and ended up with the same program;
    no temporary folder is left behind."""
    runs = built["runs"]
    assert runs[0]["exe"] == runs[1]["exe"]
    assert all(any("building the simulated board" in line for line in run["lines"])
               for run in runs)
    assert not list((built["cache"] / "fastsim").glob("tmp-*"))


def test_cache_hit_does_not_rebuild(built):
    lines = []
    start = time.monotonic()
    exe = build_fastsim(BUILD, cache_dir=built["cache"], progress=lines.append)
    assert str(exe) == built["exe"] and lines == []
    assert time.monotonic() - start < 10


def test_stalls_slow_the_stream(board):
    """Idle cycles on s_axis make a packet take longer to send; the same seed, the same
    number of cycles."""
    rng = np.random.default_rng([default_seed(), 5])
    model = random_model(rng)
    Device(board, build=BUILD, timeout=T).configure(model.config, thresholds=model.thresholds,
                                                   step=model.step)
    packet = protocol.write_h_packet(0, model.H[0], h_bits=model.config.h_bits)
    taken = []
    for idle, seed in ((0.0, 1), (0.5, 1), (0.5, 1)):
        board.set_stalls(idle=idle, seed=seed)
        c0 = board.cycles
        board.send(packet, timeout=T)
        board.wait_sent(timeout=T)
        taken.append(board.cycles - c0)
    assert taken[0] >= len(packet) and taken[1] > 1.5 * taken[0], taken
    assert taken[1] == taken[2], taken
