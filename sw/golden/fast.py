"""The fast golden model: the same integer semantics as the literal one, vectorised.

Two techniques keep it exact:

* Dot products of ±1 vectors run as ``float32`` matrix products. Every partial
  sum is an integer of magnitude at most the fan-in (< 2**24), so each one is
  represented exactly and the result equals the integer XNOR-popcount.
* Saturating CP updates are order-dependent. For one neuron updated ``n`` times
  in a minibatch with steps of ±2, the walk of each weight can hit at most one of
  the bounds ``±h_max`` while ``n <= h_max``; then the sequential result is the
  one-sided reflected walk ``h0 + S_n - max(0, max_j(h0 + S_j) - h_max)
  + max(0, -h_max - min_j(h0 + S_j))`` over the prefix sums ``S_j``, computed for
  all weights at once. Neurons updated more often fall back to a sequential loop.
"""

import numpy as np

from .model import BMLP, check_batch
from .prng import reinforce_mask_indices

__all__ = ["FastBMLP"]

_NO_CANDIDATE = np.iinfo(np.int32).min


class FastBMLP(BMLP):
    """Vectorised implementation of the training algorithm (bit-identical to the literal one)."""

    def _sync(self):
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

    def train_batch(self, a0, y):
        """Train on one minibatch. Returns the number of last-layer errors (argmax != y)."""
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
            zs = z if cfg.z_max is None else np.clip(z, -cfg.z_max, cfg.z_max)
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
        cfg = self.config
        H = self.H[l]
        order = np.argsort(ks, kind="stable")  # by neuron; pattern order kept inside
        ks, mus = ks[order], mus[order]
        rho2 = 2 * self.P[l][ks, y[mus]].astype(np.int16)
        inc = a_prev[mus].astype(np.int16) * rho2[:, None]
        starts = np.flatnonzero(np.r_[True, ks[1:] != ks[:-1]])
        cols = ks[starts]
        if cfg.h_max is None:
            H[cols] += np.add.reduceat(inc, starts, axis=0, dtype=np.int32)
        else:
            h_max = cfg.h_max
            counts = np.diff(np.r_[starts, ks.size])
            prefix = np.cumsum(inc, axis=0, dtype=np.int32)
            offset = np.zeros((starts.size, prefix.shape[1]), dtype=np.int32)
            offset[1:] = prefix[starts[1:] - 1]
            h0 = H[cols]
            total = prefix[np.r_[starts[1:], ks.size] - 1] - offset
            high = h0 + np.maximum.reduceat(prefix, starts, axis=0) - offset
            low = h0 + np.minimum.reduceat(prefix, starts, axis=0) - offset
            new = (h0 + total - np.maximum(high - h_max, 0) + np.maximum(-h_max - low, 0))
            for s in np.flatnonzero(counts > h_max):
                h = h0[s].copy()
                for row in inc[starts[s]:starts[s] + counts[s]]:
                    h = np.clip(h + row, -h_max, h_max)
                new[s] = h
            H[cols] = new
        self._Wf[l][cols] = np.where(H[cols] > 0, np.float32(1), np.float32(-1))

    def _reinforce(self, l):
        cfg = self.config
        H = self.H[l]
        idx = reinforce_mask_indices(cfg.seed, l, self.step, H.size, self.thresholds[l])
        if idx.size:
            flat = H.reshape(-1)
            v = flat[idx]
            v += np.where(v > 0, 2, -2).astype(v.dtype)
            if cfg.h_max is not None:
                np.clip(v, -cfg.h_max, cfg.h_max, out=v)
            flat[idx] = v
