"""Random networks and minibatches that fit a build, for the accelerator's regressions
(the cocotb bench and the simulated board's)."""

import numpy as np

from xnorlearn.sw.golden import prng
from xnorlearn.sw.golden.config import NetworkConfig
from xnorlearn.sw.golden.fast import FastBMLP

__all__ = ["divisors", "random_hidden", "random_model", "random_batch"]


def divisors(n):
    """The divisors of ``n``, in increasing order."""
    return [d for d in range(1, n + 1) if n % d == 0]


def random_hidden(rng, shape, h_max):
    """Random odd hidden weights of ``shape`` in ``-h_max .. h_max``: small ones, uniform
    ones, or only the saturation corners and their neighbours (one kind per call)."""
    kind = rng.integers(3)
    if kind == 0:
        h = 2 * rng.integers(-2, 2, size=shape) + 1
    elif kind == 1:
        h = 2 * rng.integers(-(h_max + 1) // 2, (h_max + 1) // 2, size=shape) + 1
    else:
        h = rng.choice([-h_max, -h_max + 2, -1, 1, h_max - 2, h_max], size=shape)
    return h.astype(np.int32)


def random_model(rng, build, *, widths=(8, 200)):
    """A random :class:`FastBMLP` that fits ``build``: 1..``max_layers`` layers, widths in
    ``widths`` (clipped to the build), a random gamma with at most ``max_groups`` groups,
    r, seed, weights (saturation corners included), thresholds ``theta``/``flip`` (a third
    of the networks), reinforcement thresholds and ``step``."""
    lo, hi = widths
    layers = int(rng.integers(1, build.max_layers + 1))
    k0 = int(rng.integers(min(lo, build.max_fan_in), min(hi, build.max_fan_in) + 1))
    ks = [int(rng.integers(min(lo, build.max_width), min(hi, build.max_width) + 1))
          for _ in range(layers)]
    gammas = []
    for k in ks:
        ok = [d for d in divisors(k) if -(-k // d) <= build.max_groups]
        gammas.append(int(rng.choice(ok)))
    cfg = NetworkConfig(sizes=(k0, *ks), classes=build.classes, gamma=tuple(gammas),
                        r=float(rng.choice([0.0, 0.25, 0.5, 1.0, 2.0])), h_bits=build.h_bits,
                        seed=int(rng.integers(0, 1 << 32)))
    model = FastBMLP(cfg)
    h_max = cfg.h_max
    for l in range(layers):
        model.H[l] = random_hidden(rng, model.H[l].shape, h_max)
        if rng.random() < 1 / 3:
            model.theta[l] = rng.integers(-cfg.sizes[l] // 4, cfg.sizes[l] // 4 + 1,
                                          size=ks[l]).astype(np.int32)
            model.flip[l] = rng.random(ks[l]) < 0.2
    model._sync()
    model.thresholds = [int(rng.choice([0, prng.DRAW_ONE, int(rng.integers(0, 20000)),
                                        int(rng.integers(0, prng.DRAW_ONE + 1))]))
                        for _ in range(layers)]
    model.step = int(rng.choice([0, int(rng.integers(0, 1 << 20)), (1 << 32) - 1]))
    return model


def random_batch(rng, model, batch_range):
    lo, hi = batch_range
    bs = int(rng.integers(lo, hi + 1))
    a0 = np.where(rng.random((bs, model.config.sizes[0])) < 0.5, 1, -1).astype(np.int8)
    y = rng.integers(0, model.config.classes, size=bs)
    return a0, y
