"""The fast golden model: the same integer semantics as the literal one, vectorised.

Two techniques keep it exact:

* Dot products of ±1 vectors run as ``float32`` matrix products. Every partial
  sum is an integer of magnitude at most the fan-in (< 2**24), so each one is
  represented exactly and the result equals the integer XNOR-popcount.
* Saturating CP updates are order-dependent, so the updates of one neuron are
  applied one after the other in pattern order. Neurons are independent of each
  other, so round ``r`` applies the ``r``-th update of every neuron at once: the
  number of rounds is the largest number of updates any one neuron receives in
  the minibatch (about 6 on Fashion-MNIST at 784-135-135, bs 100).
"""

import numpy as np

from .model import BMLP, check_batch
from .prng import reinforce_mask_indices

__all__ = ["FastBMLP"]

_NO_CANDIDATE = np.iinfo(np.int32).min


class FastBMLP(BMLP):
    """Vectorised implementation of the training algorithm (bit-identical to the literal one)."""

    def _sync(self):
        # Bounded weights of up to 15 bits are worked on as int16 (half the memory traffic).
        if self.config.h_bits is not None and self.config.h_bits <= 15:
            self.H = [np.ascontiguousarray(h, dtype=np.int16) for h in self.H]
        self._Wf = [np.where(h > 0, np.float32(1), np.float32(-1)) for h in self.H]
        self._Pf = [p.astype(np.float32) for p in self.P]

    def forward(self, a0):
        """Per layer ``(z, a, yhat)`` as arrays: ``int32`` z, ``int8`` a, ``int32`` yhat."""
        a0, _ = check_batch(self.config, a0)
        out = []
        a = a0.astype(np.float32)
        for l in range(self.config.layers):
            z, af, yhat = self._layer(l, a)
            out.append((z, af.astype(np.int8), yhat))
            a = af
        return out

    def _layer(self, l, a):
        z = (a @ self._Wf[l].T).astype(np.int32)
        if self.theta[l].any() or self.flip[l].any():
            on = (z >= self.theta[l]) ^ self.flip[l]
        else:
            on = z >= 0
        af = np.where(on, np.float32(1), np.float32(-1))
        yhat = (af @ self._Pf[l]).astype(np.int32)
        return z, af, yhat

    def train_batch(self, a0, y, validate=True):
        """Train on one minibatch. Returns the number of last-layer errors (argmax != y).

        ``validate=False`` skips the input checks, for callers that checked the
        whole dataset once with :func:`~xnorlearn.sw.golden.model.check_batch`.
        """
        if validate:
            a0, y = check_batch(self.config, a0, y)
        cfg = self.config
        bs = len(y)
        a = a0.astype(np.float32)
        inputs = []
        selections = []
        errors = 0
        for l in range(cfg.layers):
            z, af, yhat = self._layer(l, a)
            pred = np.argmax(yhat, axis=1)
            top = np.partition(yhat, -2, axis=1)
            margin = top[:, -1] - top[:, -2]
            err = (pred != y) | (margin < cfg.robustness[l])
            if l == cfg.layers - 1:
                errors = int(np.count_nonzero(pred != y))
            gamma = cfg.gamma[l]
            zs = z if cfg.z_max is None else np.clip(z, np.int32(-cfg.z_max), np.int32(cfg.z_max))
            rho = self.P[l][:, y].T  # (bs, K_l)
            delta = (zs * rho)[err].reshape(-1, cfg.sizes[l + 1] // gamma, gamma)
            masked = np.where(delta < 0, delta, _NO_CANDIDATE)
            pick = np.argmax(masked, axis=2)
            valid = np.take_along_axis(masked, pick[..., None], axis=2)[..., 0] != _NO_CANDIDATE
            rows, groups = np.nonzero(valid)  # pattern-major, then group order
            mus = np.flatnonzero(err)[rows]
            ks = groups * gamma + pick[rows, groups]
            inputs.append(a)
            selections.append((mus, ks))
            a = af
        for l, (mus, ks) in enumerate(selections):
            if ks.size:
                self._cp_update(l, inputs[l], y, mus, ks)
            self._reinforce(l)
        self._count(errors, bs)
        return errors

    def _cp_update(self, l, a_prev, y, mus, ks):
        h_max = self.config.h_max
        H = self.H[l]
        bs = a_prev.shape[0]
        if h_max is not None:
            lo, hi = H.dtype.type(-h_max), H.dtype.type(h_max)
        order = np.argsort(ks, kind="stable")  # by neuron; pattern order kept inside
        ks, mus = ks[order], mus[order]
        # Row mu of steps is +2 a^mu, row bs + mu is -2 a^mu: one gather finds any step.
        a2 = a_prev.astype(H.dtype)
        a2 *= 2
        steps = np.concatenate([a2, -a2])
        step_row = mus + bs * (self.P[l][ks, y[mus]] < 0)
        starts = np.flatnonzero(np.r_[True, ks[1:] != ks[:-1]])
        counts = np.diff(np.r_[starts, ks.size])
        rank = np.arange(ks.size) - np.repeat(starts, counts)
        # Round r applies the r-th update of every neuron updated at least r+1 times:
        # sequential per neuron, as the saturation demands, and vectorised across neurons.
        for r in range(int(counts.max())):
            sel = np.flatnonzero(rank == r) if r else starts
            rows = ks[sel]
            v = np.take(H, rows, axis=0)
            v += np.take(steps, step_row[sel], axis=0)
            if h_max is not None:
                np.clip(v, lo, hi, out=v)
            H[rows] = v
        cols = ks[starts]
        self._Wf[l][cols] = np.sign(np.take(H, cols, axis=0)).astype(np.float32)  # H is odd

    def _reinforce(self, l):
        cfg = self.config
        H = self.H[l]
        idx = reinforce_mask_indices(cfg.seed, l, self.step, H.size, self.thresholds[l])
        if idx.size:
            flat = H.reshape(-1)
            v = flat[idx]
            v += np.where(v > 0, 2, -2).astype(v.dtype)
            if cfg.h_max is not None:
                np.clip(v, v.dtype.type(-cfg.h_max), v.dtype.type(cfg.h_max), out=v)
            flat[idx] = v
