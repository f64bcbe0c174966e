"""The simulated serial board: the board's design in Verilator behind a pseudo-terminal.

:class:`SimulatedSerialBoard` builds :class:`xnorlearn.hw.serial_bridge.SerialAccelerator`
(the serial bridge and the accelerator, as on the ULX3S but without the PLL, its UART
divider set for a fast simulated line) with Verilator and the C++ harness
``tb_bridge_harness.cpp``, starts it, and gives the name of the pseudo-terminal that
carries the UART's bytes: the host opens it as a serial port, so the real
:class:`~xnorlearn.sw.serial_transport.SerialTransport` and the real driver talk to the
simulated board byte for byte as they would to a board on a USB-UART.

>>> board = SimulatedSerialBoard(build, work_dir="build/serial-sim")
>>> with board.start():
...     transport = SerialTransport.open(board.port, timeout=5)
...     dev = Device(transport)
"""

import hashlib
import json
import os
import re
import select
import shutil
import subprocess
import time
from pathlib import Path

__all__ = ["SimulatedSerialBoard", "SimulationError", "SIM_BRIDGE", "HARNESS"]

HARNESS = Path(__file__).with_name("tb_bridge_harness.cpp")
EXECUTABLE = "tb_bridge"

#: Bridge parameters of the simulated board: 4 clocks per bit (40 cycles a byte), and
#: timeouts sized for a simulation of a few million cycles per second.
SIM_BRIDGE = dict(divisor=4, fifo_depth=1024, max_chunk=64, max_out=64, byte_timeout=20_000,
                  abort_timeout=3_000_000, poll_interval=4096, led_stretch=1024)

_VERILATOR_FLAGS = ("-O3", "--x-assign", "fast", "--x-initial", "fast", "--noassert",
                    "-Wno-fatal", "-Wno-lint", "-Wno-style", "--output-split", "0")
_MAKE_FLAGS = ("OPT_FAST=-O2", "OPT_SLOW=-O1", "OPT_GLOBAL=-O1")


class SimulationError(RuntimeError):
    """The simulated board could not be built or started, or it stopped."""


class SimulatedSerialBoard:
    """The serial board's design simulated by Verilator, its UART on a pseudo-terminal.

    Parameters
    ----------
    build : Build
        The accelerator's build.
    work_dir : path
        Where the program is built (reused when the design has not changed).
    bridge : dict, optional
        Parameters of :class:`~xnorlearn.hw.serial_bridge.SerialBridge` (default
        :data:`SIM_BRIDGE`).
    progress : callable, optional
        Receives progress lines.

    Members
    -------
    port : str
        The pseudo-terminal's name while the board runs.
    stats : dict
        After :meth:`stop`: ``cycles`` simulated, ``rx_bytes`` (host to board),
        ``tx_bytes`` (board to host).
    """

    def __init__(self, build, *, work_dir, bridge=None, progress=None):
        self.build = build
        self.bridge = dict(SIM_BRIDGE, **(bridge or {}))
        self.work_dir = Path(work_dir)
        self._say = progress or (lambda text: None)
        self._proc = None
        self.port = None
        self.stats = None
        self.executable = None

    @property
    def divisor(self):
        return self.bridge["divisor"]

    def compile(self):
        """Generate the Verilog and build the simulator (skipped when it is up to date)."""
        from amaranth.back import verilog

        from xnorlearn.hw.serial_bridge import SerialAccelerator
        from xnorlearn.sim.runner import simulator_path

        design = SerialAccelerator(build=self.build, **self.bridge)
        started = time.monotonic()
        text = verilog.convert(design, name="top", emit_src=False)
        key = hashlib.sha256(text.encode() + HARNESS.read_bytes()
                             + repr((_VERILATOR_FLAGS, _MAKE_FLAGS)).encode()).hexdigest()[:16]
        folder = self.work_dir / key
        exe = folder / EXECUTABLE
        if exe.exists():
            self.executable = exe
            return exe
        self._say(f"building the simulated serial board ({len(text) // 1024} KiB of Verilog)...")
        tmp = self.work_dir / f"{key}.tmp{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        (tmp / "top.v").write_text(text)
        shutil.copy(HARNESS, tmp / HARNESS.name)
        env = dict(os.environ, PATH=simulator_path())
        log = tmp / "build.log"
        for cmd, cwd in (
                (["verilator", "--cc", "--exe", *_VERILATOR_FLAGS, "--prefix", "Vtop",
                  "--top-module", "top", "-Mdir", "obj", "-o", EXECUTABLE, "top.v",
                  HARNESS.name], tmp),
                (["make", "-j1", "-C", "obj", "-f", "Vtop.mk", *_MAKE_FLAGS, EXECUTABLE], tmp)):
            with open(log, "a") as f:
                result = subprocess.run(cmd, cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT)
            if result.returncode != 0:
                tail = log.read_text()[-3000:]
                raise SimulationError(f"building the simulated serial board failed "
                                      f"({cmd[0]}, exit {result.returncode}):\n{tail}")
        os.replace(tmp / "obj" / EXECUTABLE, tmp / EXECUTABLE)
        shutil.rmtree(tmp / "obj")
        (tmp / "build.json").write_text(json.dumps(
            {"build": vars(self.build), "bridge": self.bridge,
             "seconds": round(time.monotonic() - started, 1)}, indent=1, default=str))
        if folder.exists():
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, folder)
        self._say(f"  built in {time.monotonic() - started:.0f} s")
        self.executable = exe
        return exe

    def start(self, *, max_cycles=0):
        """Start the simulator (building it first if needed); returns ``self``, a context
        manager that stops it."""
        if self._proc is not None:
            raise SimulationError("the simulated board is already running")
        exe = self.compile()
        self._proc = subprocess.Popen([str(exe), str(self.divisor), str(max_cycles)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)
        ready, _, _ = select.select([self._proc.stdout], [], [], 30)
        line = self._proc.stdout.readline() if ready else ""
        match = re.match(r"PTY (\S+)", line)
        if match is None:
            self.stop()
            raise SimulationError(f"the simulated board did not start (said {line!r})")
        self.port = match.group(1)
        return self

    def running(self):
        return self._proc is not None and self._proc.poll() is None

    def stop(self):
        """Stop the simulator; returns :attr:`stats`."""
        proc, self._proc = self._proc, None
        if proc is None:
            return self.stats
        try:
            out, err = proc.communicate(timeout=30)     # closes stdin: the harness ends
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        match = re.search(r"STATS cycles=(\d+) rx_bytes=(\d+) tx_bytes=(\d+)", out or "")
        if match:
            self.stats = dict(zip(("cycles", "rx_bytes", "tx_bytes"), map(int, match.groups())))
        self.port = None
        return self.stats

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


# -- link throughput ------------------------------------------------------------------------

def measure_link(*, batches=4, batch_size=100, hidden=(135, 135), work_dir="build/serial-sim",
                 baud=3_000_000, clock_mhz=84.32, cycles=218_215, dataset="auto",
                 progress=print):
    """Bytes on the line per training minibatch, measured through the real transport and
    driver on the simulated board, and the throughput bounds they give.

    The board is built with the serial boards' bridge parameters (1024-word FIFO, 64-word
    chunks) and a 32-lane accelerator large enough for the network; the bytes per
    minibatch depend on the inputs and the batch size only (hidden widths and lanes change
    the accelerator's time, not the link's bytes).

    Returns
    -------
    dict
        ``down_bytes``/``up_bytes`` per minibatch (host to board, board to host),
        ``payload_bytes`` (the TRAIN packet's words), ``link_samples_per_s`` at ``baud``
        (10 bits a byte), ``accelerator_samples_per_s`` at ``clock_mhz`` and ``cycles``
        per minibatch of 100.
    """
    import numpy as np

    from xnorlearn.contract import Build
    from xnorlearn.sw import protocol
    from xnorlearn.sw.datasets import MedianBinarizer, load_dataset
    from xnorlearn.sw.driver import Device
    from xnorlearn.sw.golden import FastBMLP, NetworkConfig
    from xnorlearn.sw.serial_transport import SerialTransport

    data = load_dataset(dataset)
    binarize = MedianBinarizer().fit(data.x_train[:10000])
    a_all = binarize.transform(data.x_train[:batch_size * batches])
    y_all = data.y_train[:batch_size * batches]
    inputs = a_all.shape[1]
    build = Build(lanes=32, max_layers=len(hidden), max_width=max(hidden),
                  max_fan_in=inputs, classes=10, max_batch=max(batch_size, 1),
                  max_groups=16)
    board = SimulatedSerialBoard(build, work_dir=work_dir,
                                 bridge=dict(fifo_depth=1024, max_chunk=64), progress=progress)
    gammas = tuple(next(d for d in range(75, 0, -1) if k % d == 0) for k in hidden)
    config = NetworkConfig(sizes=(inputs, *hidden), classes=10, gamma=gammas)
    with board.start():
        transport = SerialTransport.open(board.port, timeout=20, retry_interval=2.0,
                                         cycles_per_second=2e4)
        dev = Device(transport, timeout=60)
        model = FastBMLP(config)
        dev.load(model)
        down, up = [], []
        for b in range(batches):
            a0 = a_all[b * batch_size:(b + 1) * batch_size]
            y = y_all[b * batch_size:(b + 1) * batch_size]
            w0, r0 = transport.stats["bytes_written"], transport.stats["bytes_read"]
            errors = dev.train_batch(a0, y)
            dev.transport.wait_sent(timeout=10)
            assert errors == model.train_batch(a0, y)
            down.append(transport.stats["bytes_written"] - w0)
            up.append(transport.stats["bytes_read"] - r0)
            progress(f"minibatch {b + 1}: {down[-1]} bytes to the board, {up[-1]} back")
        mismatch = dev.compare_weights(model)
        transport.close()
    payload = 4 * len(protocol.train_packet(a_all[:batch_size], y_all[:batch_size],
                                            classes=10))
    line = max(np.mean(down), np.mean(up))
    return {"down_bytes": float(np.mean(down)), "up_bytes": float(np.mean(up)),
            "payload_bytes": payload, "batch_size": batch_size, "baud": baud,
            "link_samples_per_s": batch_size / (line * 10 / baud),
            "accelerator_samples_per_s": batch_size * clock_mhz * 1e6 / cycles,
            "clock_mhz": clock_mhz, "cycles": cycles, "bit_exact": mismatch is None,
            "dataset": data.name}


if __name__ == "__main__":
    import argparse
    import sys

    parser = argparse.ArgumentParser(description="bytes per minibatch on the serial link")
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--dataset", default="auto")
    parser.add_argument("--work-dir", default="build/serial-sim")
    args = parser.parse_args()
    result = measure_link(batches=args.batches, dataset=args.dataset, work_dir=args.work_dir,
                          progress=lambda text: print(text, file=sys.stderr, flush=True))
    print(json.dumps(result, indent=1))
