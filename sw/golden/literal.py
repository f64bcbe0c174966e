"""The literal golden model: Algorithms 1-3 of the paper, loop by loop, in plain Python.

Slow and obviously correct. The scalar functions below are also the reference
each hardware block is checked against.
"""

from .model import BMLP, check_batch
from .prng import reinforce_draw

__all__ = [
    "LiteralBMLP", "saturate", "preactivation", "threshold_unit", "local_output",
    "argmax_margin", "needs_update", "select_easiest", "cp_step", "reinforce_step",
]


def saturate(v, bound):
    """Clamp ``v`` to ``-bound..bound`` (no-op when ``bound`` is None)."""
    if bound is None:
        return v
    return max(-bound, min(bound, v))


def preactivation(a_prev, w_row):
    """``z = sum_i a_i * w_i = 2 * popcount(XNOR(a, w)) - K`` for ±1 vectors."""
    matches = 0
    for a, w in zip(a_prev, w_row):
        if a == w:
            matches += 1
    return 2 * matches - len(a_prev)


def threshold_unit(z, theta=0, flip=False):
    """``+1`` if ``(z >= theta) XOR flip`` else ``-1``; sign(z), sign(0)=+1 for theta=0."""
    return 1 if ((z >= theta) != bool(flip)) else -1


def local_output(act, P):
    """``yhat_c = sum_k act_k * P[k][c]`` for each class ``c``."""
    classes = len(P[0])
    return [sum(int(act[k]) * int(P[k][c]) for k in range(len(act))) for c in range(classes)]


def argmax_margin(yhat):
    """``(argmax, top1 - top2)``; argmax ties go to the lowest index."""
    best = 0
    for c in range(1, len(yhat)):
        if yhat[c] > yhat[best]:
            best = c
    second = max(yhat[c] for c in range(len(yhat)) if c != best)
    return best, yhat[best] - second


def needs_update(yhat, label, robustness):
    """The local error decision: wrong class, or a margin below ``robustness``."""
    pred, margin = argmax_margin(yhat)
    return pred != label or margin < robustness


def select_easiest(delta, gamma):
    """For each contiguous group of ``gamma`` neurons, the index of the negative
    ``delta`` closest to zero (lowest index on ties), or ``None`` if none is negative."""
    picks = []
    for g in range(len(delta) // gamma):
        best = None
        for k in range(g * gamma, (g + 1) * gamma):
            if delta[k] < 0 and (best is None or delta[k] > delta[best]):
                best = k
        picks.append(best)
    return picks


def cp_step(h, a_prev, rho, h_max):
    """Clipped-perceptron step on one neuron's hidden weights (a new list)."""
    return [saturate(hi + 2 * ai * rho, h_max) for hi, ai in zip(h, a_prev)]


def reinforce_step(h, draw, threshold, h_max):
    """Reinforcement of one hidden weight: ``h + 2 sign(h)`` if ``draw < threshold``."""
    if draw < threshold:
        return saturate(h + (2 if h > 0 else -2), h_max)
    return h


class LiteralBMLP(BMLP):
    """Literal implementation of the training algorithm (reference; slow)."""

    def forward(self, a0):
        """Per layer ``(z, a, yhat)`` as nested lists (exact pre-activations)."""
        a0, _ = check_batch(self.config, a0)
        cfg = self.config
        layers = []
        a_prev = [[int(v) for v in row] for row in a0]
        for l in range(cfg.layers):
            H, P = self.H[l].tolist(), self.P[l].tolist()
            theta, flip = self.theta[l].tolist(), self.flip[l].tolist()
            W = [[1 if h > 0 else -1 for h in row] for row in H]
            z = [[preactivation(a, W[k]) for k in range(len(W))] for a in a_prev]
            act = [[threshold_unit(zk, theta[k], flip[k]) for k, zk in enumerate(zmu)]
                   for zmu in z]
            yhat = [local_output(amu, P) for amu in act]
            layers.append((z, act, yhat))
            a_prev = act
        return layers

    def train_batch(self, a0, y, validate=True):
        """Train on one minibatch. Returns the number of last-layer errors (argmax != y).

        Inputs are always checked (``validate`` exists for API compatibility).
        """
        a0, y = check_batch(self.config, a0, y)
        cfg = self.config
        y = [int(v) for v in y]
        layers = self.forward(a0)
        inputs = [[[int(v) for v in row] for row in a0]] + [act for _, act, _ in layers[:-1]]
        updates = []
        for l, (z, act, yhat) in enumerate(layers):
            P = self.P[l].tolist()
            robustness = cfg.robustness[l]
            M = [mu for mu in range(len(y)) if needs_update(yhat[mu], y[mu], robustness)]
            U = []
            for mu in M:
                delta = [saturate(z[mu][k], cfg.z_max) * P[k][y[mu]] for k in range(len(P))]
                for k in select_easiest(delta, cfg.gamma[l]):
                    if k is not None:
                        U.append((mu, k))
            updates.append(U)
        for l, U in enumerate(updates):
            H = self.H[l].tolist()
            P = self.P[l].tolist()
            for mu, k in U:
                H[k] = cp_step(H[k], inputs[l][mu], P[k][y[mu]], cfg.h_max)
            fan_in = cfg.sizes[l]
            for k in range(len(H)):
                for i in range(fan_in):
                    draw = reinforce_draw(cfg.seed, l, self.step, k * fan_in + i)
                    H[k][i] = reinforce_step(H[k][i], draw, self.thresholds[l], cfg.h_max)
            self.H[l][:] = H
        errors = sum(1 for mu in range(len(y)) if argmax_margin(layers[-1][2][mu])[0] != y[mu])
        self._count(errors, len(y))
        return errors
