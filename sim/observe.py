"""What a host reads back from the accelerator, and its comparison with the golden model.

An :class:`Observation` is the accelerator's state after a minibatch as the host driver
reads it (every ``H`` and ``P``, the errors of the TRAIN status word, the predictions of
an INFER, the counters); :func:`expected_observation` is the golden model's, and
:func:`compare` finds the first difference. The regression bench
(:mod:`xnorlearn.sim.tb_accel`) and ``xnorlearn verify`` check through it.
"""

import dataclasses

import numpy as np

from xnorlearn.sw.driver import COUNTERS, CYCLE_COUNTERS, Mismatch, first_difference

__all__ = ["Observation", "expected_observation", "compare", "observe"]

_MASK32 = 0xFFFFFFFF


@dataclasses.dataclass
class Observation:
    """The accelerator's state as a host reads it after a minibatch (or the golden
    model's, from :func:`expected_observation`). Fields left ``None`` are not compared.

    Attributes
    ----------
    H : list of numpy.ndarray
        Hidden weights per layer, ``(K_l, K_{l-1})``.
    P : list of numpy.ndarray
        Classifier weights per layer, ``(K_l, classes)``, ±1.
    train_errors : int or None
        Errors reported by the status word of the TRAIN packet.
    predictions : numpy.ndarray or None
        Classes predicted by an INFER packet.
    infer_errors : int or None
        Errors reported by the INFER status word.
    counters : dict
        ``{register: value}`` of :data:`COUNTERS` (and, only reported, :data:`CYCLE_COUNTERS`).
    """

    H: list
    P: list
    train_errors: object = None
    predictions: object = None
    infer_errors: object = None
    counters: dict = dataclasses.field(default_factory=dict)

    def corrupted(self, what, layer=None, index=None):
        """A copy with one expected value changed (a test hook that proves a mismatch is
        reported): ``what`` ``"H"`` (odd weights stay odd), ``"P"``, ``"prediction"`` or a
        counter name."""
        H = [np.array(h, copy=True) for h in self.H]
        P = [np.array(p, copy=True) for p in self.P]
        preds = None if self.predictions is None else np.array(self.predictions, copy=True)
        counters = dict(self.counters)
        index = tuple(index) if index is not None else None
        if what == "H":
            H[layer][index] = H[layer][index] + (2 if H[layer][index] < 0 else -2)
        elif what == "P":
            P[layer][index] = -P[layer][index]
        elif what == "prediction":
            preds[index] = preds[index] + 1
        else:
            counters[what] = (counters[what] + 1) & _MASK32
        return dataclasses.replace(self, H=H, P=P, predictions=preds, counters=counters)


def expected_observation(model, *, patterns, errors, train_errors=None, infer=None):
    """What the accelerator should show for the golden ``model`` in its current state.

    Parameters
    ----------
    model : xnorlearn.sw.golden.model.BMLP
    patterns, errors : int
        Patterns and last-layer errors trained since the accelerator's counters were
        cleared (the ``PATTERNS`` / ``ERRORS`` registers; compared mod 2**32).
    train_errors : int, optional
        Errors of the last TRAIN packet (its status word).
    infer : (a0, y), optional
        The INFER packet sent: the predictions of the golden forward pass and its errors.
    """
    preds = infer_errors = None
    if infer is not None:
        a0, y = infer
        preds = np.argmax(model.forward(a0)[-1][2], axis=1).astype(np.int64)
        infer_errors = int(np.count_nonzero(preds != np.asarray(y)))
    return Observation(
        H=[np.asarray(h, dtype=np.int64) for h in model.H],
        P=[np.asarray(p, dtype=np.int64) for p in model.P],
        train_errors=train_errors, predictions=preds, infer_errors=infer_errors,
        counters={"PATTERNS": patterns & _MASK32, "ERRORS": errors & _MASK32,
                  "STEP": model.step & _MASK32})


def compare(expected, got, batch=None):
    """The first :class:`Mismatch` between two :class:`Observation` s, or ``None``.

    Checked in the order the accelerator produces them: the TRAIN status word, ``H``
    and ``P`` of each layer (whole matrices, element by element), the INFER predictions
    and its status word, then the counters :data:`COUNTERS`. A field that is ``None``
    in ``expected`` is skipped.
    """
    def scalar(what, want, have):
        if want is not None and want != have:
            return Mismatch(what, None, None, want, have, batch)
        return None

    found = scalar("TRAIN errors", expected.train_errors, got.train_errors)
    if found:
        return found
    for what, want_layers, got_layers in (("H", expected.H, got.H), ("P", expected.P, got.P)):
        if len(want_layers) != len(got_layers):
            return Mismatch(what, None, "layers", len(want_layers), len(got_layers), batch)
        for layer, (want, have) in enumerate(zip(want_layers, got_layers)):
            diff = first_difference(want, have)
            if diff is not None:
                return Mismatch(what, layer, *diff, batch)
    if expected.predictions is not None:
        diff = first_difference(expected.predictions, got.predictions)
        if diff is not None:
            return Mismatch("prediction", None, *diff, batch)
    found = scalar("INFER errors", expected.infer_errors, got.infer_errors)
    if found:
        return found
    for name in COUNTERS:
        if name in expected.counters:
            found = scalar(name, expected.counters[name], got.counters.get(name))
            if found:
                return found
    return None


def observe(device, *, train_errors=None, infer=None):
    """What the host reads back through ``device`` (a :class:`~xnorlearn.sw.driver.Device`):
    every weight, the INFER of ``infer`` (``(a0, y)``) and the counters."""
    H, P = device.read_weights()
    preds = infer_errors = None
    if infer is not None:
        preds, infer_errors = device.infer(*infer)
    return Observation(H=H, P=P, train_errors=train_errors, predictions=preds,
                       infer_errors=infer_errors, counters=device.counters())
