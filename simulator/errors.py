"""The one error the simulator raises: a phantom it cannot render (unknown kind, bad size, frame rate or length)."""

from __future__ import annotations

__all__ = ["PhantomError"]


class PhantomError(ValueError):
    """An invalid phantom parameter; ``str(err)`` is one line that names it and, for a kind, the valid ones.

    A plain ``ValueError`` so that the simulator needs nothing from ``sonolens.pipeline``: the ``phantom:KIND``
    source and ``sonolens simulate`` turn it into a ``SourceError`` (one line on stderr, exit code 2).
    """
