"""The B-mode breast ultrasound phantom: simulated scans for ``phantom:KIND`` sources and ``sonolens simulate``.

Every frame is a simulation, never patient data; the screen says so. numpy + OpenCV only: the simulator
imports nothing from ``sonolens.pipeline`` (Qt, torch, models, training neither), except its command line
``simulator.cli``, which writes MP4 clips with the pipeline's ``VideoWriter``. The pipeline depends on the
simulator, through the thin source ``pipeline/sources/phantom.py``, not the other way round.

Kinds (``KINDS``): ``normal`` (no lesion), ``cyst``, ``benign``, ``malignant`` (one lesion that grows, peaks
and vanishes as the probe sweeps across it, centred in the clip) and ``sweep`` (cyst, benign, malignant in turn).

Modules, from the scene to the screen:

* ``kinds`` — the phantom kinds and ``check_kind``; ``errors`` — ``PhantomError`` (a ``ValueError``);
* ``noise`` — seeded random streams and smooth random fields;
* ``tissue`` — breast anatomy as echogenicity and attenuation maps; ``lesions`` — cyst, fibroadenoma and
  carcinoma bodies painted into those maps; ``timeline`` — where the probe is when, and which lesions it passes;
* ``screen`` — the scanner screen around the image; ``render`` — ``Phantom``: speckle, point-spread function,
  envelope, log compression, random access by frame index;
* ``bench`` — milliseconds per frame; ``cli`` — ``sonolens simulate`` (clips, the committed samples, bench).

Usage::

    from sonolens.simulator import Phantom
    ph = Phantom("malignant", seed=14, seconds=6.0)   # size=(640, 480), fps=30
    frame = ph.render(90)                              # (480, 640, 3) uint8 RGB
    boxes = ph.truth(90)                               # [LesionTruth(kind, bbox, center, scale)]
"""

from __future__ import annotations

from .bench import bench
from .errors import PhantomError
from .kinds import KINDS, LESION_KINDS, check_kind
from .render import LesionTruth, Phantom
from .screen import Layout

__all__ = ["Phantom", "LesionTruth", "Layout", "KINDS", "LESION_KINDS", "PhantomError", "check_kind", "bench"]
