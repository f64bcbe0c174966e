"""The host-side training loop, shared by every device.

A device is any object with the model API of
:class:`~xnorlearn.sw.golden.model.BMLP`: ``config``, ``epoch``,
``train_batch(a0, y)``, ``end_epoch()``, ``predict(a0)``, ``save(path)``: the golden
model itself, or an accelerator wrapped in :class:`~xnorlearn.sw.driver.DeviceModel`.
A device that also has ``train_batches(batches, on_batch)`` gets a whole epoch at once
(so a transport can queue the next packet while one trains), and one with
``epoch_cycles()`` has its cycle counters recorded per epoch.
The loop owns what is host side by design: the per-epoch shuffle, the
binarisation, the reinforcement schedule written at each epoch start, metrics,
checkpoints and the plot.
"""

import json
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["epoch_order", "Progress", "train", "plot_metrics"]


def epoch_order(seed, epoch, n):
    """The pattern order of one epoch: a permutation fixed by ``(seed, epoch)``."""
    return np.random.default_rng([seed, 0xE90C, epoch]).permutation(n)


class Progress:
    """One-line progress for long jobs; redraws in place on a terminal, quiet otherwise."""

    def __init__(self, stream=None, enabled=True):
        self._stream = stream or sys.stderr
        self._tty = enabled and hasattr(self._stream, "isatty") and self._stream.isatty()
        self._last = 0.0

    def update(self, text, force=False):
        if not self._tty:
            return
        now = time.monotonic()
        if force or now - self._last > 0.2:
            self._last = now
            self._stream.write("\r\x1b[K" + text)
            self._stream.flush()

    def clear(self):
        if self._tty:
            self._stream.write("\r\x1b[K")
            self._stream.flush()


def plot_metrics(metrics, path, title=""):
    """Write a PNG of the per-epoch test accuracy and training error; returns False
    (and writes nothing) when matplotlib is not installed (``xnorlearn[plot]``)."""
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    epochs = [m["epoch"] for m in metrics]
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    ax.plot(epochs, [100 * m["test_accuracy"] for m in metrics], "o-", label="test accuracy")
    ax.plot(epochs, [100 * (1 - m["train_error"]) for m in metrics], "s--",
            label="1 - training error (online)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("%")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def train(model, data, *, epochs, batch_size, out_dir=None, log=None, progress=None,
          plot_title="", meta=None, clock_mhz=None, on_epoch=None):
    """Train ``model`` on binarised ``data`` up to ``epochs`` epochs in total.

    Parameters
    ----------
    model : BMLP-like device
        Resumes from ``model.epoch`` (a loaded checkpoint continues bit-exactly).
    data : dict
        ``a_train``, ``y_train``, ``a_test``, ``y_test`` (±1 ``int8`` and labels).
    epochs : int
        Total number of epochs after training.
    batch_size : int
    out_dir : path, optional
        Receives ``metrics.json`` and ``model.npz`` after every epoch, and
        ``accuracy.png`` at the end.
    meta : dict, optional
        Extra entries for ``metrics.json`` (dataset, device, ...).
    clock_mhz : float, optional
        For a device with cycle counters: the FPGA clock at which its cycles are
        converted into ``fpga_samples_per_second``.
    on_epoch : callable, optional
        Called with the list of epoch metrics after each epoch (a live plot, say).

    Returns
    -------
    list of dict
        One entry per epoch: ``epoch``, ``train_error``, ``test_accuracy``,
        ``seconds``, ``samples_per_second``, ``thresholds``; for a device with cycle
        counters also ``cycles`` (``CYCLES`` and its split by phase, for the training
        minibatches of the epoch) and, with ``clock_mhz``, ``fpga_samples_per_second``.
    """
    from .golden import check_batch
    a_train, y_train = check_batch(model.config, data["a_train"], data["y_train"])
    a_test, y_test = check_batch(model.config, data["a_test"], data["y_test"])
    n = len(y_train)
    seed = model.config.seed
    progress = progress or Progress(enabled=False)
    log = log or (lambda text: print(text, flush=True))
    out = Path(out_dir) if out_dir is not None else None
    metrics = []
    if out is not None and (out / "metrics.json").exists() and model.epoch > 0:
        metrics = [m for m in json.loads((out / "metrics.json").read_text())["epochs"]
                   if m["epoch"] <= model.epoch]
    cycles_of = getattr(model, "epoch_cycles", None)
    while model.epoch < epochs:
        e = model.epoch
        order = epoch_order(seed, e, n)
        start = time.perf_counter()
        if cycles_of is not None:
            cycles_of()                 # the epoch's cycles count from here

        def show(b):
            done = min(b + batch_size, n)
            rate = done / max(time.perf_counter() - start, 1e-9)
            progress.update(f"epoch {e + 1}/{epochs} {done:>7}/{n} patterns, {rate:,.0f} patterns/s")

        starts = range(0, n, batch_size)
        if hasattr(model, "train_batches"):
            model.train_batches(((a_train[order[b:b + batch_size]],
                                  y_train[order[b:b + batch_size]]) for b in starts),
                                on_batch=lambda i, errors: show(starts[i]))
        else:
            for b in starts:
                idx = order[b:b + batch_size]
                model.train_batch(a_train[idx], y_train[idx], validate=False)
                show(b)
        train_seconds = time.perf_counter() - start
        cycles = cycles_of() if cycles_of is not None else None
        train_error = model.end_epoch()
        acc = float(np.mean(model.predict(a_test) == y_test))
        progress.clear()
        m = {"epoch": e + 1, "train_error": train_error, "test_accuracy": acc,
             "seconds": time.perf_counter() - start,
             "samples_per_second": n / train_seconds,
             "thresholds": list(model.thresholds)}
        fpga = ""
        if cycles is not None:
            m["cycles"] = cycles
            fpga = f", {cycles['CYCLES']:,} cycles"
            if clock_mhz:
                m["fpga_samples_per_second"] = n * clock_mhz * 1e6 / max(cycles["CYCLES"], 1)
                fpga += (f" = {m['fpga_samples_per_second']:,.0f} patterns/s on the FPGA at "
                         f"{clock_mhz:g} MHz")
        metrics.append(m)
        log(f"epoch {e + 1:3d}/{epochs}  train error {100 * train_error:6.2f}%  "
            f"test accuracy {100 * acc:6.2f}%  ({m['seconds']:.1f} s, "
            f"{m['samples_per_second']:,.0f} patterns/s{fpga})")
        if out is not None:
            model.save(out / "model.npz")
            (out / "metrics.json").write_text(json.dumps(
                {**(meta or {}), "config": model.config.to_dict(), "batch_size": batch_size,
                 "epochs": metrics},
                indent=1))
        if on_epoch is not None:
            on_epoch(metrics)
    if out is not None and metrics:
        if not plot_metrics(metrics, out / "accuracy.png", title=plot_title):
            log("no accuracy.png: matplotlib is not installed (pip install 'xnorlearn[plot]')")
    return metrics
