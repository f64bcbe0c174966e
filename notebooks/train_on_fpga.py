# %% [markdown]
# # Train a binary MLP on the FPGA
#
# This notebook trains a binary multi-layer perceptron (784-135-135 on Fashion-MNIST by
# default) **on the xnorlearn accelerator**: XNOR/popcount forward passes, local binary
# errors and CP+R updates of 8-bit hidden weights, all in the fabric. The host only
# streams minibatches and reads results back.
#
# It opens the PYNQ board when it runs on one (with the overlay written by
# `xnorlearn overlay`, see `docs/pynq.md`) and the **simulated board** otherwise: the
# accelerator's own Verilog, compiled by Verilator, behind the same driver. Beside the
# device, the golden model (the bit-exact NumPy definition of the algorithm) trains the
# same minibatches, and every weight is compared at the end of each epoch.
#
# Run it in Jupyter, or as a script: `python notebooks/train_on_fpga.py`.
# `XNORLEARN_NOTEBOOK_QUICK=1` makes a short run on a small network (CI runs that).

# %%
import os
import time
from pathlib import Path

import matplotlib
import numpy as np

try:
    from IPython import get_ipython
    IN_NOTEBOOK = get_ipython() is not None
except ImportError:
    IN_NOTEBOOK = False
if not IN_NOTEBOOK:
    matplotlib.use("Agg")
import matplotlib.pyplot as plt


def show(fig):
    """Show a finished figure in the notebook (any matplotlib backend), then free it."""
    if IN_NOTEBOOK:
        from IPython.display import display
        display(fig)
    plt.close(fig)


from xnorlearn.contract import Build
from xnorlearn.sw.datasets import MedianBinarizer, find_dataset_dir, load_dataset
from xnorlearn.sw.devices import open_device, pynq_board_present
from xnorlearn.sw.driver import DeviceModel
from xnorlearn.sw.golden import FastBMLP, NetworkConfig
from xnorlearn.sw.train import train

QUICK = os.environ.get("XNORLEARN_NOTEBOOK_QUICK") == "1"
OVERLAY = Path(os.environ.get("XNORLEARN_OVERLAY", "overlay/xnorlearn.bit"))
OUT = Path(os.environ.get("XNORLEARN_NOTEBOOK_OUT", "runs/notebook"))
HIDDEN = (32, 32) if QUICK else (135, 135)
EPOCHS = 2 if QUICK else 3
BATCH = 100
SEED = 0
OUT.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## Data
#
# Fashion-MNIST (Debian's `dataset-fashion-mnist`), binarised per pixel at the median of
# the training set: the accelerator sees ±1 inputs only.

# %%
name = "fashion-mnist" if find_dataset_dir("fashion-mnist") else "synthetic"
data = load_dataset(name, seed=SEED)
if QUICK:
    data = data.limit(2000, 500)
binarizer = MedianBinarizer().fit(data.x_train)
arrays = {"a_train": binarizer.transform(data.x_train), "y_train": data.y_train,
          "a_test": binarizer.transform(data.x_test), "y_test": data.y_test}
print(f"{data.name}: {len(data.y_train)} training and {len(data.y_test)} test patterns, "
      f"{data.features} features, {data.classes} classes")

# %% [markdown]
# ## The device
#
# The PYNQ board if there is one, else the simulated board. The driver reads the
# build's parameters from the device's registers and refuses a network that does not
# fit it.

# %%
on_board = OVERLAY.is_file() and pynq_board_present()
if on_board:
    device = open_device("pynq", overlay=OVERLAY)
else:
    build = (Build(lanes=32, max_layers=2, max_width=32, max_fan_in=data.features,
                   classes=data.classes, max_batch=BATCH, max_groups=4)
             if QUICK else Build(classes=data.classes))
    device = open_device("sim", build=build, progress=print)
b = device.build
print(f"device: {device.transport.name}; build: {b.lanes} lanes, up to {b.max_layers} layers "
      f"of {b.max_width} neurons, {b.max_fan_in} inputs, {b.classes} classes, "
      f"minibatches of up to {b.max_batch}")

# %% [markdown]
# ## Training, with the golden model beside the device
#
# `DeviceModel` gives the device the golden model's API; with `golden_check=True` the
# golden model trains the same minibatches and every weight is compared after each
# epoch (a difference stops the run and names the first differing weight).

# %%
config = NetworkConfig(sizes=(data.features, *HIDDEN), classes=data.classes, seed=SEED)
model = DeviceModel(device, FastBMLP(config), golden_check=True)


class LiveProgress:
    """A progress line and an accuracy plot that redraw in place in Jupyter."""

    def __init__(self):
        self.fig, self.ax = plt.subplots(figsize=(6, 3.5))
        self.text = None
        self.plot = None
        if IN_NOTEBOOK:
            from IPython.display import display
            self.text = display("starting...", display_id=True)
            self.plot = display(self.fig, display_id=True)

    def update(self, text, force=False):
        if self.text is not None:
            self.text.update(text)

    def clear(self):
        pass

    def epoch(self, metrics):
        ax = self.ax
        ax.clear()
        epochs = [m["epoch"] for m in metrics]
        ax.plot(epochs, [100 * m["test_accuracy"] for m in metrics], "o-",
                label="test accuracy (INFER on the device)")
        ax.plot(epochs, [100 * (1 - m["train_error"]) for m in metrics], "s--",
                label="1 - training error")
        ax.set_xlabel("epoch")
        ax.set_ylabel("%")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
        self.fig.tight_layout()
        if self.plot is not None:
            self.plot.update(self.fig)


live = LiveProgress()
t0 = time.perf_counter()
metrics = train(model, arrays, epochs=EPOCHS, batch_size=BATCH, out_dir=OUT, progress=live,
                on_epoch=live.epoch, clock_mhz=84.32,
                meta={"dataset": data.name, "device": device.transport.name})
plt.close(live.fig)
print(f"trained {EPOCHS} epochs in {time.perf_counter() - t0:.0f} s")
for m in metrics:
    print(f"epoch {m['epoch']}: test accuracy {100 * m['test_accuracy']:.2f} %, "
          f"{m['cycles']['CYCLES']:,} cycles = "
          f"{m['fpga_samples_per_second']:,.0f} patterns/s at 84.32 MHz")

# %% [markdown]
# ## Bit-exact with the golden model
#
# The golden check ran after every epoch; here once more, on the final state: every
# hidden weight `H` and classifier weight `P` of every layer, read back from the device.

# %%
mismatch = device.compare_weights(model.shadow)
weights = sum(h.size + p.size for h, p in zip(model.shadow.H, model.shadow.P))
print("bit-exact: all" if mismatch is None else f"MISMATCH: {mismatch}",
      f"{weights:,} weights equal to the golden model's after {model.shadow.step} minibatches")
golden_acc = float(np.mean(model.shadow.predict(arrays["a_test"]) == arrays["y_test"]))
print(f"test accuracy: device {100 * metrics[-1]['test_accuracy']:.2f} %, "
      f"golden model {100 * golden_acc:.2f} %")
assert mismatch is None

# %% [markdown]
# ## Confusion matrix and a few predictions

# %%
pred = model.predict(arrays["a_test"])
c = data.classes
confusion = np.zeros((c, c), dtype=np.int64)
np.add.at(confusion, (arrays["y_test"], pred), 1)
FASHION = ["T-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
           "bag", "boot"]
labels = FASHION if name == "fashion-mnist" else [str(i) for i in range(c)]
fig, ax = plt.subplots(figsize=(5.5, 5))
ax.imshow(confusion, cmap="Blues")
for i in range(c):
    for j in range(c):
        ax.text(j, i, confusion[i, j], ha="center", va="center", fontsize=7,
                color="white" if confusion[i, j] > confusion.max() / 2 else "black")
ax.set_xticks(range(c), labels, rotation=60, fontsize=8)
ax.set_yticks(range(c), labels, fontsize=8)
ax.set_xlabel("predicted")
ax.set_ylabel("true")
ax.set_title(f"confusion matrix, {100 * np.trace(confusion) / confusion.sum():.2f} % correct")
fig.tight_layout()
fig.savefig(OUT / "confusion.png")
show(fig)

side = int(round(np.sqrt(data.features)))
if side * side == data.features:
    fig, axes = plt.subplots(1, 8, figsize=(12, 2))
    for ax, i in zip(axes, range(8)):
        ax.imshow(data.x_test[i].reshape(side, side), cmap="gray")
        ok = pred[i] == data.y_test[i]
        ax.set_title(f"{labels[pred[i]]}\n({labels[data.y_test[i]]})", fontsize=8,
                     color="green" if ok else "red")
        ax.axis("off")
    fig.suptitle("predicted (true)", fontsize=9)
    fig.savefig(OUT / "predictions.png")
    show(fig)

# %% [markdown]
# ## Save the model
#
# The device's weights, read back, in the golden model's file format: it loads with
# `FastBMLP.load`, and `xnorlearn train --resume` continues it on any device.

# %%
model.save(OUT / "model.npz")
device.transport.close()
print(f"saved {OUT / 'model.npz'}")
