"""Argument types shared by the command-line tools (``argparse`` ``type=`` callables)."""

import argparse

__all__ = ["positive", "int_or_none", "probability"]


def int_or_none(text):
    """An integer, or ``None`` for ``none``/``unbounded``/``0``."""
    if text.lower() in ("none", "unbounded", "0"):
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'none', got {text!r}") from None


def positive(text):
    """A positive integer."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def probability(text):
    """A number in 0..1."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in 0..1, got {text!r}") from None
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in 0..1, got {v}")
    return v
