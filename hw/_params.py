"""Checks shared by the components' keyword-only parameters."""

__all__ = ["check_int"]


def check_int(name, value, lo, hi):
    """Return ``value`` if it is an int in ``lo..hi``; else raise naming it and the range.

    Raises
    ------
    TypeError
        If ``value`` is not an integer (``bool`` is refused too).
    ValueError
        If ``value`` is outside ``lo..hi``.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in {lo}..{hi}, got {value}")
    return value
