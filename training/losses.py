"""The knowledge-distillation loss (Hinton et al. 2015) as both source papers use it.

    L = w_hard · CE(s, y) + w_kd · T² · KL( softmax(t/T) ‖ softmax(s/T) )

The T² factor keeps the soft term's gradient magnitude independent of the temperature (the gradients of the
softened KL scale as 1/T²). KL uses batch-mean reduction — the mathematically correct mean over samples;
``reduction="mean"`` would also divide by the number of classes. Weights: breast-ultrasound paper
``w_hard = w_kd = 0.5``; NanoRay V2 ``w_hard = 0.75, w_kd = 0.25``; both ``T = 4``.

The teacher logits are detached here too, so even a caller that forgets ``torch.no_grad`` cannot push
gradients into the teacher.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class KDParts:
    total: torch.Tensor
    hard: torch.Tensor  # CE(student, labels), unweighted
    kd: torch.Tensor  # T² · KL(teacher ‖ student) at temperature T, unweighted


class KDLoss(nn.Module):
    def __init__(self, w_hard: float = 0.5, w_kd: float = 0.5, temperature: float = 4.0,
                 label_smoothing: float = 0.0):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.w_hard, self.w_kd, self.temperature = float(w_hard), float(w_kd), float(temperature)
        self.label_smoothing = float(label_smoothing)

    def forward(self, student_logits: torch.Tensor, labels: torch.Tensor,
                teacher_logits: torch.Tensor | None = None) -> KDParts:
        hard = F.cross_entropy(student_logits, labels, label_smoothing=self.label_smoothing)
        if teacher_logits is None or self.w_kd == 0.0:
            kd = hard.new_zeros(())
        else:
            kd = kd_term(student_logits, teacher_logits.detach(), self.temperature)
        total = self.w_hard * hard + self.w_kd * kd
        return KDParts(total=total, hard=hard, kd=kd)

    def extra_repr(self) -> str:
        return f"w_hard={self.w_hard}, w_kd={self.w_kd}, temperature={self.temperature}"


def kd_term(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T² · KL(softmax(t/T) ‖ softmax(s/T)), averaged over the batch."""
    t = float(temperature)
    return F.kl_div(F.log_softmax(student_logits / t, dim=1), F.log_softmax(teacher_logits / t, dim=1),
                    reduction="batchmean", log_target=True) * (t * t)
