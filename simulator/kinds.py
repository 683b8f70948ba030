"""What the probe can pass: the phantom kinds, and the check that a requested kind is one of them.

``normal`` (no lesion), ``cyst``, ``benign``, ``malignant`` (one lesion that grows, peaks and vanishes as the
probe sweeps across it) and ``sweep`` (cyst, benign, malignant in turn).
"""

from __future__ import annotations

from .errors import PhantomError

__all__ = ["KINDS", "LESION_KINDS", "check_kind"]

KINDS: tuple[str, ...] = ("normal", "cyst", "benign", "malignant", "sweep")
LESION_KINDS: tuple[str, ...] = ("cyst", "benign", "malignant")


def check_kind(kind: str) -> str:
    """Return ``kind`` if it is a phantom kind, else raise ``PhantomError`` listing the valid ones."""
    if kind not in KINDS:
        raise PhantomError(f"unknown phantom kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    return kind
