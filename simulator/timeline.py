"""Where the phantom probe is at each moment, and which lesions lie along its path."""

from __future__ import annotations

from .kinds import LESION_KINDS
from .lesions import Lesion, make_lesion

__all__ = ["Timeline"]


class Timeline:
    """Probe elevation over time and the lesions laid out along its path.

    Finite clips (``seconds`` given) place one lesion at mid-clip (``cyst``/``benign``/``malignant``) or, for
    ``sweep``, cyst → benign → malignant at 1/6, 3/6 and 5/6 of the clip; the probe speeds up for short
    sweeps so lesions never overlap. Endless (live) runs repeat: one new lesion every 6 s, or for ``sweep``
    the three kinds in turn every 4 s, each drawn afresh from (seed, lesion number).
    """

    SPEED_MM_S = 4.0
    Y0_MM = 12.0

    def __init__(self, kind: str, seed: int, seconds: float | None) -> None:
        self.kind, self.seed, self.seconds = kind, seed, seconds
        self.speed = self.SPEED_MM_S
        self._fixed: list[Lesion] | None = None
        if kind == "normal":
            self._fixed = []
        elif seconds is not None:
            if kind == "sweep":
                gap = seconds / 3.0
                self.speed = max(self.SPEED_MM_S, 14.0 / max(gap, 1e-3))
                times = [gap * (j + 0.5) for j in range(3)]
                kinds = LESION_KINDS
            else:
                times, kinds = [seconds / 2.0], (kind,)
            self._fixed = [make_lesion(k, seed, j, self.elevation(t)) for j, (k, t) in enumerate(zip(kinds, times))]
        else:
            self.period_s, self.first_s = (4.0, 2.0) if kind == "sweep" else (6.0, 3.0)

    def elevation(self, t_s: float) -> float:
        """Probe elevation (mm) ``t_s`` seconds into the scan."""
        return self.Y0_MM + self.speed * t_s

    def lesion(self, k: int) -> Lesion:
        kind = LESION_KINDS[k % 3] if self.kind == "sweep" else self.kind
        return make_lesion(kind, self.seed, k, self.elevation(self.first_s + k * self.period_s))

    def lesions_near(self, y_mm: float) -> list[Lesion]:
        """Lesions whose body may intersect the plane at ``y_mm``."""
        if self._fixed is not None:
            return [les for les in self._fixed if abs(y_mm - les.y) < les.ay]
        t = (y_mm - self.Y0_MM) / self.speed
        k_mid = round((t - self.first_s) / self.period_s)
        out = []
        for k in range(max(0, k_mid - 1), k_mid + 2):
            les = self.lesion(k)
            if abs(y_mm - les.y) < les.ay:
                out.append(les)
        return out
