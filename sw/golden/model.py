"""Training state shared by both golden-model implementations: weights, schedule, I/O.

Orientation: ``H[l]`` has shape ``(K_l, K_{l-1})`` (neuron-major: row ``k`` holds
the fan-in weights of neuron ``k``; SPEC.md's ``H_l`` is its transpose). This is
also the order of the accelerator's weight memory and of the reinforcement draws.
"""

import io
import json
import math
import os

import numpy as np

from .config import NetworkConfig
from .prng import STREAM_INIT_H, STREAM_INIT_P, pm1_bits

__all__ = ["BMLP", "FORMAT_VERSION", "check_batch"]

FORMAT_VERSION = 1


def check_batch(config, a0, y=None):
    """Validate one minibatch against ``config``; return ``(a0, y)`` as int8 / int64.

    Raises
    ------
    ValueError
        On a shape mismatch, values other than ±1, or labels out of ``0..classes-1``.
    """
    a0 = np.asarray(a0)
    if a0.ndim != 2 or a0.shape[1] != config.sizes[0]:
        raise ValueError(f"inputs must have shape (batch, {config.sizes[0]}), got {a0.shape}")
    if a0.shape[0] < 1:
        raise ValueError("a minibatch needs at least one pattern")
    if not np.all((a0 == 1) | (a0 == -1)):
        raise ValueError("binary inputs must hold only -1 and +1")
    a0 = a0.astype(np.int8, copy=False)
    if y is None:
        return a0, None
    y = np.asarray(y)
    if y.shape != (a0.shape[0],):
        raise ValueError(f"labels must have shape ({a0.shape[0]},), got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= config.classes):
        bad = y[(y < 0) | (y >= config.classes)][0]
        raise ValueError(f"label {bad} out of range 0..{config.classes - 1}")
    return a0, y.astype(np.int64, copy=False)


class BMLP:
    """State of a binary MLP under CP+R training, and its epoch schedule.

    Subclasses (:class:`~xnorlearn.sw.golden.literal.LiteralBMLP`,
    :class:`~xnorlearn.sw.golden.fast.FastBMLP`) implement ``train_batch`` and
    ``forward``; they are bit-identical.

    Parameters
    ----------
    config : NetworkConfig

    Members
    -------
    H : list of numpy.ndarray
        Hidden weights, ``int32``, shape ``(K_l, K_{l-1})``, always odd.
    P : list of numpy.ndarray
        Fixed classifier weights in {-1, +1}, ``int8``, shape ``(K_l, classes)``.
    theta, flip : list of numpy.ndarray
        Threshold unit of each neuron: ``a = (z >= theta) XOR flip`` (0 and
        False for training; a folded batch norm sets them for inference).
    step : int
        Minibatches trained so far (the reinforcement counter ``t``).
    epoch : int
        Epochs completed.
    """

    def __init__(self, config):
        if not isinstance(config, NetworkConfig):
            raise TypeError(f"config must be a NetworkConfig, got {type(config).__name__}")
        self._config = config
        self.H = [self._init_h(l) for l in range(config.layers)]
        self.P = [pm1_bits(config.seed, STREAM_INIT_P, l, config.sizes[l + 1] * config.classes)
                  .reshape(config.sizes[l + 1], config.classes) for l in range(config.layers)]
        self.theta = [np.zeros(k, dtype=np.int32) for k in config.sizes[1:]]
        self.flip = [np.zeros(k, dtype=bool) for k in config.sizes[1:]]
        self.step = 0
        self.epoch = 0
        self.p_r = float(config.p_r)
        self.e_prev = 1.0
        self.epoch_errors = 0
        self.epoch_seen = 0
        self.thresholds = self.schedule_thresholds()
        self._sync()

    @property
    def config(self):
        return self._config

    def _init_h(self, l):
        cfg = self._config
        k_in, k = cfg.sizes[l], cfg.sizes[l + 1]
        if cfg.init == "pm1":
            h = pm1_bits(cfg.seed, STREAM_INIT_H, l, k * k_in).astype(np.int32)
        else:
            rng = np.random.default_rng([cfg.seed, STREAM_INIT_H, l])
            h = (2 * np.floor(rng.normal(0.0, cfg.init_sigma, k * k_in) / 2) + 1).astype(np.int32)
            if cfg.h_max is not None:
                np.clip(h, -cfg.h_max, cfg.h_max, out=h)
        return h.reshape(k, k_in)

    def _sync(self):
        """Called after the weights were replaced wholesale (subclasses refresh caches)."""

    # -- schedule ---------------------------------------------------------------------------

    def schedule_thresholds(self):
        """Reinforcement thresholds (16-bit draws) for the current epoch, one per layer."""
        cfg = self._config
        scale = cfg.p_r * math.sqrt(self.e_prev) if cfg.schedule == "code" else self.p_r
        return [cfg.reinforce_threshold(l, scale) for l in range(cfg.layers)]

    def end_epoch(self):
        """Close an epoch: update the schedule from its last-layer training error.

        Returns
        -------
        float
            The epoch's last-layer training error (fraction of patterns).
        """
        if self.epoch_seen == 0:
            raise RuntimeError("end_epoch() called before any minibatch of the epoch")
        err = self.epoch_errors / self.epoch_seen
        if self._config.schedule == "paper":
            self.p_r *= math.sqrt(err)
        self.e_prev = err
        self.epoch += 1
        self.epoch_errors = 0
        self.epoch_seen = 0
        self.thresholds = self.schedule_thresholds()
        return err

    def _count(self, errors, seen):
        self.epoch_errors += int(errors)
        self.epoch_seen += int(seen)
        self.step += 1

    # -- inference --------------------------------------------------------------------------

    def predict(self, a0, batch_size=1000):
        """Predicted class of each ±1 input row (argmax of the last local output, ties low)."""
        a0, _ = check_batch(self._config, a0)
        out = [np.argmax(self.forward(a0[i:i + batch_size])[-1][2], axis=1)
               for i in range(0, len(a0), batch_size)]
        return np.concatenate(out)

    def accuracy(self, a0, y):
        a0, y = check_batch(self._config, a0, y)
        return float(np.mean(self.predict(a0) == y))

    # -- state I/O --------------------------------------------------------------------------

    def state_dict(self):
        """Everything needed to continue training bit-exactly, as plain arrays and numbers."""
        meta = {
            "format": FORMAT_VERSION,
            "config": self._config.to_dict(),
            "step": self.step, "epoch": self.epoch, "p_r": self.p_r, "e_prev": self.e_prev,
            "epoch_errors": self.epoch_errors, "epoch_seen": self.epoch_seen,
            "thresholds": list(self.thresholds),
        }
        arrays = {}
        for l in range(self._config.layers):
            arrays[f"H{l}"] = self.H[l].astype(np.int32)
            arrays[f"P{l}"] = self.P[l]
            arrays[f"theta{l}"] = self.theta[l]
            arrays[f"flip{l}"] = self.flip[l]
        return meta, arrays

    def save(self, path):
        """Write the whole state to ``path`` (a ``.npz`` file), bit-exactly."""
        meta, arrays = self.state_dict()
        buf = io.BytesIO()
        np.savez_compressed(buf, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
                            **arrays)
        tmp = f"{path}.tmp"
        with open(tmp, "wb") as f:
            f.write(buf.getvalue())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path):
        """Read a state written by :meth:`save`; the implementation is ``cls``.

        Raises
        ------
        ValueError
            If the file is not a model file, or its arrays do not match its configuration.
        """
        try:
            with np.load(path, allow_pickle=False) as z:
                files = {k: z[k] for k in z.files}
        except (OSError, ValueError) as e:
            raise ValueError(f"{path}: not a readable xnorlearn model file ({e})") from None
        if "meta" not in files:
            raise ValueError(f"{path}: not an xnorlearn model file (no 'meta' entry)")
        meta = json.loads(files.pop("meta").tobytes().decode())
        return cls.from_state_dict(meta, files, source=str(path))

    @classmethod
    def from_state_dict(cls, meta, arrays, source="state"):
        if meta.get("format") != FORMAT_VERSION:
            raise ValueError(f"{source}: model format {meta.get('format')!r} is not supported "
                             f"(this version reads {FORMAT_VERSION})")
        config = NetworkConfig.from_dict(meta["config"])
        model = cls(config)
        for l in range(config.layers):
            k_in, k = config.sizes[l], config.sizes[l + 1]
            want = {f"H{l}": ((k, k_in), np.int32), f"P{l}": ((k, config.classes), np.int8),
                    f"theta{l}": ((k,), np.int32), f"flip{l}": ((k,), bool)}
            for name, (shape, dtype) in want.items():
                if name not in arrays:
                    raise ValueError(f"{source}: missing array {name}")
                arr = arrays[name]
                if arr.shape != shape:
                    raise ValueError(f"{source}: {name} has shape {arr.shape}, "
                                     f"the configuration needs {shape}")
                if arr.dtype != dtype:
                    raise ValueError(f"{source}: {name} has dtype {arr.dtype}, expected "
                                     f"{np.dtype(dtype)}")
            h = arrays[f"H{l}"]
            if np.any(h % 2 == 0):
                raise ValueError(f"{source}: H{l} holds even values; hidden weights are always odd")
            if config.h_max is not None and np.any(np.abs(h) > config.h_max):
                raise ValueError(f"{source}: H{l} exceeds ±{config.h_max} ({config.h_bits} bits)")
            if not np.all(np.abs(arrays[f"P{l}"]) == 1):
                raise ValueError(f"{source}: P{l} must hold only -1 and +1")
            model.H[l] = h.copy()
            model.P[l] = arrays[f"P{l}"].copy()
            model.theta[l] = arrays[f"theta{l}"].copy()
            model.flip[l] = arrays[f"flip{l}"].copy()
        for key in ("step", "epoch", "epoch_errors", "epoch_seen"):
            setattr(model, key, int(meta[key]))
        model.p_r = float(meta["p_r"])
        model.e_prev = float(meta["e_prev"])
        model.thresholds = [int(t) for t in meta["thresholds"]]
        model._sync()
        return model

    def copy_state_from(self, other):
        """Take over the whole state of ``other`` (any implementation, same config)."""
        meta, arrays = other.state_dict()
        src = type(self).from_state_dict(meta, {k: v.copy() for k, v in arrays.items()})
        self.__dict__.update(src.__dict__)
        return self

    def same_state(self, other):
        """``None`` if both states are identical, else a description of the first difference."""
        ma, aa = self.state_dict()
        mb, ab = other.state_dict()
        for key in ma:
            if ma[key] != mb[key]:
                return f"{key}: {ma[key]!r} != {mb[key]!r}"
        for key in aa:
            if not np.array_equal(aa[key], ab[key]):
                idx = np.argwhere(aa[key] != ab[key])[0]
                return (f"{key}{tuple(int(i) for i in idx)}: "
                        f"{aa[key][tuple(idx)]} != {ab[key][tuple(idx)]}")
        return None
