"""Checks shared by the components' keyword-only parameters (the contract's own)."""

from xnorlearn.contract import check_int

__all__ = ["check_int"]
