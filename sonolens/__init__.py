"""sonolens: a real-time ultrasound AI overlay that runs on an ordinary CPU.

Research use only — not a diagnostic device.

The distribution maps the repository's top-level folders into one namespace:
``app/`` → ``sonolens.app`` (the only Qt code), ``pipeline/`` → ``sonolens.pipeline``
(runtime, no torch, no Qt), ``models/`` → ``sonolens.models`` and ``training/`` →
``sonolens.training`` (both need the ``train`` extra).
"""

__version__ = "0.1.0"
RESEARCH_NOTICE = "Research use only — not for diagnosis."
