"""The serial board in simulation: the bridge and the accelerator in Verilator behind a
pseudo-terminal, driven by the real SerialTransport (pyserial) and the real Device driver.

Training is compared bit for bit with the golden model; each link fault (a damaged byte
and a dropped byte towards the board, damaged frames from it, a host that disappears in
the middle of a packet) must be detected, reported, and recovered from with the weights
still equal to the golden model's. The board is built with a 64-word FIFO and 16-word
chunks, so that the credit flow control limits the host all the time.
"""

import logging
import time

import pytest

from xnorlearn.contract import Build, ErrorCode, Opcode
from xnorlearn.hw import serial_bridge as hw
from xnorlearn.serial_link import FrameType
from xnorlearn.sim.random_networks import random_batch, random_model
from xnorlearn.sim.tb_bridge import SimulatedSerialBoard
from xnorlearn.sw import protocol
from xnorlearn.sw import serial_transport as sw
from xnorlearn.sw.driver import Device, DeviceError
from xnorlearn.sw.serial_transport import SerialTransport, decode_frames, encode_frame
from xnorlearn.sw.transport import TransportError

serial = pytest.importorskip("serial")

BUILD = Build(lanes=32, max_layers=2, max_width=64, max_fan_in=128, classes=4, max_batch=16,
              max_groups=8)
BRIDGE = dict(fifo_depth=64, max_chunk=16)
#: Simulated seconds pass at a few million cycles per second: generous waits.
LINK = dict(timeout=20.0, retry_interval=1.0, max_retries=10, cycles_per_second=2e4)


@pytest.fixture(scope="module")
def board(build_root):
    sim = SimulatedSerialBoard(BUILD, work_dir=f"{build_root}/serial-board", bridge=BRIDGE)
    sim.compile()
    return sim


@pytest.fixture
def running(board):
    board.start()
    try:
        yield board
    finally:
        board.stop()


class FaultyPort:
    """A pyserial port that damages what it carries once armed: ``flip`` a byte in the
    middle of the next written frame of at least ``min_len`` bytes, ``drop`` one, ``cut``
    the line there (the write fails, as when a cable is pulled) or ``mute`` it (later
    writes vanish, as from a host that hangs); ``read_flip`` damages the byte ``at`` of
    what is read from now on."""

    def __init__(self, port):
        self._port = port
        self._write_fault = None
        self._read_fault = None
        self.muted = False

    name = property(lambda self: self._port.name)
    in_waiting = property(lambda self: self._port.in_waiting)

    @property
    def timeout(self):
        return self._port.timeout

    @timeout.setter
    def timeout(self, value):
        self._port.timeout = value

    def arm(self, kind, *, min_len=60, skip=0):
        self._write_fault = [kind, min_len, skip]

    def arm_read(self, at):
        self._read_fault = at

    def write(self, data):
        data = bytes(data)
        if self.muted:
            return len(data)
        fault = self._write_fault
        if fault is not None and len(data) >= fault[1]:
            if fault[2]:
                fault[2] -= 1
            else:
                self._write_fault = None
                i = len(data) // 2
                while data[i] in (0x7D, 0x7E) or data[i] ^ 0x10 in (0x7D, 0x7E):
                    i += 1
                if fault[0] == "flip":
                    data = data[:i] + bytes([data[i] ^ 0x10]) + data[i + 1:]
                elif fault[0] == "drop":
                    data = data[:i] + data[i + 1:]
                elif fault[0] == "cut":
                    self._port.write(data[:i])
                    self._port.flush()
                    raise OSError("the cable was pulled")
                elif fault[0] == "mute":
                    self._port.write(data[:i])
                    self.muted = True
                    return len(data)
                self._port.write(data)
                return len(data) + (fault[0] == "drop")
        return self._port.write(data)

    def read(self, n):
        data = self._port.read(n)
        if self._read_fault is not None and data:
            if self._read_fault < len(data):
                i = self._read_fault
                data = data[:i] + bytes([data[i] ^ 0x04]) + data[i + 1:]
                self._read_fault = None
            else:
                self._read_fault -= len(data)
        return data

    def reset_input_buffer(self):
        self._port.reset_input_buffer()

    def flush(self):
        self._port.flush()

    def close(self):
        self._port.close()


def connect(board, faulty=False, **kwargs):
    port = serial.Serial(board.port, baudrate=3_000_000, timeout=0.05)
    if faulty:
        port = FaultyPort(port)
    transport = SerialTransport(port, **{**LINK, **kwargs})
    return transport, port


def start_training(board, rng, faulty=True, **link):
    transport, port = connect(board, faulty, **link)
    dev = Device(transport, timeout=LINK["timeout"])
    model = random_model(rng, BUILD, widths=(20, 64))
    dev.load(model)
    return transport, port, dev, model


def train_and_compare(dev, model, rng, batches=2):
    for _ in range(batches):
        a0, y = random_batch(rng, model, (1, BUILD.max_batch))
        assert dev.train_batch(a0, y) == model.train_batch(a0, y)
    assert dev.compare_weights(model) is None


# -- protocol -----------------------------------------------------------------------------------

def test_host_and_gateware_agree_on_the_protocol(rng):
    # Frame types, reasons and escapes come from one module (xnorlearn.serial_link); the
    # gateware's CRC network (evaluated from its XOR terms) is the host's CRC.
    for _ in range(50):
        data = bytes(rng.integers(0, 256, size=int(rng.integers(1, 40))).tolist())
        crc = 0xFFFF
        for byte in data:
            crc = sum(1 << n for n, terms in enumerate(hw._CRC16)
                      if sum((crc >> i if kind == "c" else byte >> i) & 1
                             for kind, i in terms) & 1)
        assert crc == sw._crc(data)


def test_frames_encode_and_decode(rng):
    payload = bytes([0x7E, 0x7D, 0x00, 0x5E]) + bytes(rng.integers(0, 256, 36).tolist())
    frame = encode_frame(FrameType.OUT, 0x7E, payload)
    assert frame.count(0x7E) == 1                       # only the FLAG: the rest escaped
    buffer = bytearray(b"\x13\x37" + frame + frame[:10])
    got = decode_frames(buffer)
    assert got[0][0] is None and "2 bytes outside" in got[0][1]
    assert got[1] == (FrameType.OUT, 0x7E, payload)
    assert bytes(buffer) == frame[:10]                  # unfinished: kept
    damaged = bytearray(frame[:20] + bytes([frame[20] ^ 1]) + frame[21:])
    assert "CRC" in decode_frames(damaged)[0][1]
    assert "cut short" in decode_frames(bytearray(frame[:20] + frame))[0][1]


# -- training -----------------------------------------------------------------------------------

def test_training_bit_exact(running, rng):
    transport, _ = connect(running)
    dev = Device(transport, timeout=LINK["timeout"])
    assert dev.build == BUILD
    model = random_model(rng, BUILD, widths=(20, 64))
    dev.load(model)
    assert dev.compare_weights(model) is None
    for b in range(3):
        a0, y = random_batch(rng, model, (1, BUILD.max_batch))
        assert dev.train_batch(a0, y) == model.train_batch(a0, y)
        assert dev.compare_weights(model, batch=b + 1) is None
    # Queued sends: the next TRAIN streams into the bridge while one trains.
    batches = [random_batch(rng, model, (BUILD.max_batch, BUILD.max_batch)) for _ in range(4)]
    assert dev.train_batches(batches) == [model.train_batch(a0, y) for a0, y in batches]
    assert dev.compare_weights(model) is None
    a0, y = random_batch(rng, model, (1, BUILD.max_batch))
    preds, errors = dev.infer(a0, y)
    assert (preds == model.predict(a0)).all()
    assert dev.read("STEP") == model.step & 0xFFFFFFFF
    # A clean link: nothing refused, nothing sent twice, no byte lost to the FIFO.
    assert transport.events == []
    assert transport.stats["nacks"] == transport.stats["chunks_resent"] == 0
    assert transport.stats["board_overflows"] == 0
    assert transport.stats["chunks_written"] > 30
    assert transport.stats["credit_waits"] > 0          # the 64-word FIFO held the host back
    transport.close()


def test_train_command_on_the_serial_board(running, tmp_path):
    """``xnorlearn train --device ulx3s --port PORT`` (open_ulx3s_transport, pyserial):
    the same errors and accuracies as the golden model, epoch by epoch."""
    import json

    from xnorlearn.sw.cli import main
    common = ["--dataset", "synthetic", "--hidden", "24", "16", "--epochs", "2",
              "--train-limit", "96", "--test-limit", "32", "--batch-size", "16", "--quiet"]
    assert main(["train", "--device", "ulx3s", "--port", running.port, "--timeout", "20",
                 *common, "--out", str(tmp_path / "board")]) == 0
    assert main(["train", "--device", "golden", *common, "--out", str(tmp_path / "golden")]) == 0
    board, golden = (json.loads((tmp_path / d / "metrics.json").read_text())["epochs"]
                     for d in ("board", "golden"))
    assert [(e["train_error"], e["test_accuracy"]) for e in board] == \
        [(e["train_error"], e["test_accuracy"]) for e in golden]


class BarePort:
    """Only ``read(n)``, ``write(data)`` and ``timeout``: what SerialTransport needs."""

    def __init__(self, port):
        self._port = port
        self.timeout = port.timeout

    def read(self, n):
        self._port.timeout = self.timeout
        return self._port.read(n)

    def write(self, data):
        return self._port.write(data)


def test_bare_port_object(running, rng):
    transport = SerialTransport(BarePort(serial.Serial(running.port, timeout=0.05)), **LINK)
    dev = Device(transport, timeout=LINK["timeout"])
    model = random_model(rng, BUILD, widths=(8, 32))
    dev.load(model)
    train_and_compare(dev, model, rng, batches=1)
    transport.close()


def test_register_errors(running):
    transport, _ = connect(running)
    with pytest.raises(TransportError, match="offset 0x2c was answered SLVERR"):
        transport.read32(0x2C, timeout=5)
    with pytest.raises(TransportError, match="offset 0x0 was answered SLVERR"):
        transport.write32(0x0, 1, timeout=5)
    with pytest.raises(TransportError, match="offset 0x1000 was answered DECERR"):
        transport.read32(0x1000, timeout=5)
    assert transport.read32(0, timeout=5) == 0x584E524C
    transport.close()


# -- link faults ----------------------------------------------------------------------------------

@pytest.mark.parametrize("fault, reason", [("flip", "NACK_CRC"), ("drop", "NACK_")])
def test_damaged_byte_to_the_board(running, rng, fault, reason, caplog):
    """A chunk damaged on its way is refused by the bridge and sent again; only the
    verified copy reaches the accelerator."""
    transport, port, dev, model = start_training(running, rng)
    a0, y = random_batch(rng, model, (BUILD.max_batch, BUILD.max_batch))
    port.arm(fault, skip=1)                 # the second chunk of the TRAIN packet
    with caplog.at_level(logging.WARNING, logger="xnorlearn.serial"):
        assert dev.train_batch(a0, y) == model.train_batch(a0, y)
    assert any(reason in e for e in transport.events), transport.events
    assert any("sending again from chunk" in r.message for r in caplog.records)
    assert transport.stats["chunks_resent"] >= 1
    counter = "board_crc_errors" if fault == "flip" else "board_framing_errors"
    assert transport.stats[counter] + transport.stats["board_timeouts"] >= 1
    assert dev.compare_weights(model) is None
    # A damaged register write is refused too, and made once when asked again.
    port.arm(fault, min_len=10)
    dev.write("STEP", model.step)
    assert transport.stats["register_retries"] >= 1
    train_and_compare(dev, model, rng)
    transport.close()


def quiet(dev):
    """Let every STATUS still on its way arrive, so that the next bytes read are the
    answers to what is sent next."""
    dev.transport.wait_sent(timeout=10)
    time.sleep(0.3)
    dev.read("ID")


def test_damaged_frames_from_the_board(running, rng):
    transport, port, dev, model = start_training(running, rng)
    quiet(dev)
    # A damaged register answer: asked again, answered from the bridge's copy.
    port.arm_read(6)
    assert dev.read("ID") == 0x584E524C
    assert transport.stats["damaged_frames_read"] == 1
    assert transport.stats["register_retries"] == 1
    # A damaged response frame cannot be sent again: the read fails, naming the loss, and
    # the device is usable after a reset.
    quiet(dev)
    port.arm_read(100)
    with pytest.raises(DeviceError, match="READ_H of layer 0: .*response .*lost"):
        dev.read_h(0)
    dev.soft_reset()
    assert dev.compare_weights(model) is None
    train_and_compare(dev, model, rng)
    transport.close()


def _cut_during(dev, port, model, rng, opcode):
    """Send a TRAIN (or load H) with the line cut in the middle of the packet."""
    port.arm("cut", skip=1)
    with pytest.raises(TransportError, match="writing to the serial port failed: the cable "
                                             "was pulled"):
        if opcode == Opcode.TRAIN:
            a0, y = random_batch(rng, model, (BUILD.max_batch, BUILD.max_batch))
            dev.train_batch(a0, y)
        else:
            dev.transport.send(protocol.write_h_packet(0, model.H[0] * 0 + 1, h_bits=8),
                               timeout=10)
    dev.transport.close()


@pytest.mark.parametrize("opcode", [Opcode.TRAIN, Opcode.WRITE_H])
def test_host_disappears_mid_packet(running, rng, opcode):
    """The line is cut in the middle of a packet and a new host connects: the new session
    ends the packet, the accelerator refuses it with LENGTH; a refused TRAIN changed no
    weight, a refused WRITE_H is sent again whole (docs/architecture.md)."""
    transport, port, dev, model = start_training(running, rng)
    _cut_during(dev, port, model, rng, opcode)
    transport2, _ = connect(running)
    assert transport2.abandoned_packet
    dev2 = Device(transport2, timeout=LINK["timeout"])
    dev2.configure(model.config, thresholds=model.thresholds, step=model.step)
    st = dev2.status()
    assert st.error and st.error_code == ErrorCode.LENGTH, st
    dev2.clear_error()
    assert not dev2.status().error
    if opcode == Opcode.WRITE_H:
        dev2.load(model)
    assert dev2.compare_weights(model) is None
    train_and_compare(dev2, model, rng)
    transport2.close()


def test_silent_host_mid_packet(running, rng):
    """A host that stops in the middle of a packet (and stays connected): after the
    bridge's abort_timeout the packet is ended, the host is told, and a new session
    finds the accelerator's LENGTH refusal and nothing changed."""
    # Retries for longer than the bridge's abort_timeout takes even on a loaded machine.
    transport, port, dev, model = start_training(running, rng, max_retries=120)
    port.arm("mute", skip=1)
    a0, y = random_batch(rng, model, (BUILD.max_batch, BUILD.max_batch))
    with pytest.raises(TransportError, match="the board ended the command packet in progress "
                                             "because the host was silent"):
        dev.train_batch(a0, y)
    transport.close()
    transport2, _ = connect(running)
    assert not transport2.abandoned_packet          # already ended by the bridge
    dev2 = Device(transport2, timeout=LINK["timeout"])
    st = dev2.status()
    assert st.error and st.error_code == ErrorCode.LENGTH, st
    dev2.configure(model.config, thresholds=model.thresholds, step=model.step)
    dev2.clear_error()
    assert dev2.compare_weights(model) is None
    train_and_compare(dev2, model, rng)
    transport2.close()


def test_no_board(tmp_path):
    """A port with nothing behind it: opening gives up within its timeout, saying why."""
    import os
    import pty
    master, slave = pty.openpty()
    try:
        port = serial.Serial(os.ttyname(slave), timeout=0.05)
        with pytest.raises(TransportError, match="no answer to SYNC within 0.5 s: is the board "
                                                 "programmed"):
            SerialTransport(port, timeout=0.5, retry_interval=0.1)
    finally:
        os.close(master)
        os.close(slave)
    with pytest.raises(TransportError, match="cannot open serial port /nonexistent"):
        SerialTransport.open("/nonexistent/tty")
