"""Checks shared by the components' keyword-only parameters (the contract's own)."""

from xnorlearn.contract import check_int

__all__ = ["check_int", "check_lanes", "check_draw_lanes"]


def check_lanes(lanes, lo=32, hi=1024):
    """Return ``lanes`` if it is a multiple of 32 (the stream's word) in ``lo..hi``; else
    raise naming it."""
    check_int("lanes", lanes, lo, hi)
    if lanes % 32:
        raise ValueError(f"lanes must be a multiple of 32 in {lo}..{hi}, not {lanes}")
    return lanes


def check_draw_lanes(draw_lanes, lanes):
    """Return ``draw_lanes`` if it is a power of two, at least 2, dividing ``lanes``."""
    check_int("draw_lanes", draw_lanes, 2, lanes)
    if lanes % draw_lanes or draw_lanes & (draw_lanes - 1):
        raise ValueError(f"draw_lanes must be a power of two dividing lanes ({lanes}), "
                         f"not {draw_lanes}")
    return draw_lanes
