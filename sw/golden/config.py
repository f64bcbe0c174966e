"""Network configuration: every choice the algorithm leaves open, in one place."""

import dataclasses
import json
import math

from .prng import check_seed

__all__ = ["NetworkConfig", "default_gamma", "robustness_threshold", "INIT_CHOICES",
           "SCHEDULE_CHOICES", "REINFORCE_N_CHOICES"]

INIT_CHOICES = ("pm1", "normal")
SCHEDULE_CHOICES = ("code", "paper")
REINFORCE_N_CHOICES = ("fan_in", "width")


def default_gamma(width, target=75):
    """The divisor of ``width`` closest to ``target``; ties go to the smaller divisor."""
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"layer width must be a positive integer, got {width!r}")
    divisors = [d for d in range(1, width + 1) if width % d == 0]
    return min(divisors, key=lambda d: (abs(d - target), d))


def robustness_threshold(r, width):
    """``R = ceil(r * width)``, computed without floating-point surprises."""
    from fractions import Fraction
    return math.ceil(Fraction(str(r)) * width)


def _check_int(name, value, lo, hi=None):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        allowed = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise ValueError(f"{name} must be {allowed}, got {value}")


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
    """Shape and hyperparameters of a binary MLP trained with CP+R.

    Parameters
    ----------
    sizes : tuple of int
        ``(K_0, K_1, ..., K_L)``: input features followed by the hidden layer widths.
    classes : int
        Number of classes ``c`` (2..256).
    gamma : tuple of int, optional
        Group size of each hidden layer; must divide the layer width. Default:
        the divisor closest to 75 (:func:`default_gamma`).
    r : float
        Robustness; layer ``l`` updates a pattern whose top-1 minus top-2 local
        output is below ``R_l = ceil(r * K_l)``.
    h_bits : int or None
        Bits of the signed hidden weights ``H``; they saturate at
        ``±(2**(h_bits-1) - 1)``.  ``None`` leaves them unbounded.
    z_bits : int or None
        Pre-activations are saturated to ``±(2**(z_bits-1) - 1)`` before the
        group selection; ``None`` (default) keeps them exact.  The sign and
        threshold units always see the exact value.
    p_r : float
        Initial reinforcement probability scale ``p_r``.
    schedule : {"code", "paper"}
        ``"code"``: ``p = p_r * sqrt(E_prev) * sqrt(2 / (pi N))`` each epoch, with
        ``E_prev`` the last layer's training error of the previous epoch (1 in
        the first).  ``"paper"``: ``p_r <- p_r * sqrt(E)`` after every epoch
        (compounding) and ``p = p_r * sqrt(2 / (pi N))``.
    reinforce_n : {"fan_in", "width"}
        ``N`` in the reinforcement probability: the layer's fan-in ``K_{l-1}``
        (as the authors' code) or its width ``K_l`` (as the paper's text).
    init : {"pm1", "normal"}
        Initial ``H``: uniform in {-1, +1} from the hardware PRNG (``"pm1"``) or
        odd integers from a normal of standard deviation ``init_sigma``,
        saturated (``"normal"``, host side only).
    init_sigma : float
        Standard deviation of the ``"normal"`` initialisation.
    seed : int
        32-bit seed of every random stream (see :mod:`xnorlearn.sw.golden.prng`).

    Raises
    ------
    TypeError, ValueError
        On any parameter out of its allowed range, naming the parameter.
    """

    sizes: tuple
    classes: int
    gamma: tuple = None
    r: float = 0.25
    h_bits: int = 8
    z_bits: int = None
    p_r: float = 0.5
    schedule: str = "code"
    reinforce_n: str = "fan_in"
    init: str = "pm1"
    init_sigma: float = 64.0
    seed: int = 0

    def __post_init__(self):
        sizes = tuple(self.sizes)
        if len(sizes) < 2:
            raise ValueError(f"sizes needs the input size and at least one layer, got {sizes}")
        for i, k in enumerate(sizes):
            _check_int(f"sizes[{i}]", k, 1, 1 << 20)
        object.__setattr__(self, "sizes", sizes)
        _check_int("classes", self.classes, 2, 256)
        if self.gamma is None:
            gamma = tuple(default_gamma(k) for k in sizes[1:])
        else:
            gamma = tuple(self.gamma)
            if len(gamma) != len(sizes) - 1:
                raise ValueError(f"gamma needs one group size per hidden layer "
                                 f"({len(sizes) - 1}), got {len(gamma)}")
            for l, (g, k) in enumerate(zip(gamma, sizes[1:])):
                _check_int(f"gamma[{l}]", g, 1, k)
                if k % g:
                    raise ValueError(f"gamma[{l}] = {g} does not divide layer width {k}; "
                                     f"divisors near 75: {default_gamma(k)}")
        object.__setattr__(self, "gamma", gamma)
        if not isinstance(self.r, (int, float)) or not 0 <= self.r <= 2:
            raise ValueError(f"r must be a number in 0..2, got {self.r!r}")
        for name in ("h_bits", "z_bits"):
            value = getattr(self, name)
            if value is not None:
                _check_int(name, value, 2, 31)
        if not isinstance(self.p_r, (int, float)) or not 0 <= self.p_r <= 1e6:
            raise ValueError(f"p_r must be a non-negative number, got {self.p_r!r}")
        if self.schedule not in SCHEDULE_CHOICES:
            raise ValueError(f"schedule must be one of {SCHEDULE_CHOICES}, got {self.schedule!r}")
        if self.reinforce_n not in REINFORCE_N_CHOICES:
            raise ValueError(f"reinforce_n must be one of {REINFORCE_N_CHOICES}, "
                             f"got {self.reinforce_n!r}")
        if self.init not in INIT_CHOICES:
            raise ValueError(f"init must be one of {INIT_CHOICES}, got {self.init!r}")
        if not isinstance(self.init_sigma, (int, float)) or self.init_sigma <= 0:
            raise ValueError(f"init_sigma must be positive, got {self.init_sigma!r}")
        object.__setattr__(self, "seed", check_seed(self.seed))
        object.__setattr__(self, "_robustness",
                           tuple(robustness_threshold(self.r, k) for k in sizes[1:]))

    @property
    def layers(self):
        """Number of hidden layers ``L``."""
        return len(self.sizes) - 1

    @property
    def h_max(self):
        """Saturation bound of ``H`` (``None`` when unbounded)."""
        return None if self.h_bits is None else (1 << (self.h_bits - 1)) - 1

    @property
    def z_max(self):
        """Saturation bound of the stored pre-activations (``None`` when exact)."""
        return None if self.z_bits is None else (1 << (self.z_bits - 1)) - 1

    @property
    def robustness(self):
        """Integer thresholds ``R_l = ceil(r * K_l)``, one per layer."""
        return self._robustness

    def reinforce_threshold(self, layer, p_r):
        """16-bit threshold of layer ``layer`` for the current scale ``p_r``."""
        from .prng import DRAW_ONE
        n = self.sizes[layer] if self.reinforce_n == "fan_in" else self.sizes[layer + 1]
        p = p_r * math.sqrt(2.0 / (math.pi * n))
        return max(0, min(DRAW_ONE, int(math.floor(p * DRAW_ONE + 0.5))))

    def to_dict(self):
        d = dataclasses.asdict(self)
        d["sizes"] = list(self.sizes)
        d["gamma"] = list(self.gamma)
        return d

    @classmethod
    def from_dict(cls, d):
        d = dict(d)
        d["sizes"] = tuple(d["sizes"])
        d["gamma"] = tuple(d["gamma"]) if d.get("gamma") is not None else None
        return cls(**d)

    def to_json(self):
        return json.dumps(self.to_dict(), sort_keys=True)
