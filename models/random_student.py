"""A randomly initialised student that still behaves like a network: for tests and benchmarks, never diagnosis.

Its spec says so: ``provenance["weights"] == RANDOM_PROVENANCE`` (``is_random_init``), and exports of it (or of a
checkpoint saved from it) carry ``trained=false``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .adapters import DEFAULT_STUDENT
from .cam_fusion import spread_random_head
from .registry import create_model, spec_of

RANDOM_PROVENANCE = "random init, not a trained model"


def build_random_student(seed: int = 0, **cfg: Any) -> nn.Module:
    """A randomly initialised student in eval mode whose outputs depend on the input like a trained net's.

    ``cfg``: ``create_model`` keyword arguments (``arch`` selects another registered student).
    With timm's init (BN running mean 0 / var 1, identity affine) the signal shrinks ~50x through the
    blocks and the logits and CAMs barely change with the input. So, seeded: BN affine parameters are
    drawn around identity, then the running statistics are re-estimated on a few smooth random images
    (data-dependent init), which puts every block back at unit scale. Still random weights: the spec's
    provenance says so — for tests (parity must not pass on a flat CAM) and benchmarks only.
    """
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = create_model(cfg.pop("arch", DEFAULT_STUDENT), **cfg)
    h, w = spec_of(model).input_size
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.BatchNorm2d):
                c = mod.num_features
                mod.weight.copy_(1.0 + 0.25 * torch.randn(c, generator=gen))
                mod.bias.copy_(0.25 * torch.randn(c, generator=gen))
                mod.reset_running_stats()
                mod.momentum = None  # cumulative average over the calibration batches
        nn.init.normal_(model.classifier.weight, std=0.1, generator=gen)
        model.train()
        model(_calibration_batch(8, h, w, gen))
        for mod in model.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.momentum = 0.1
        model.eval()
        spread_random_head(model, model.forward_features(_calibration_batch(8, h, w, gen)))
    model.sonolens_spec = spec_of(model).with_fields(provenance={"weights": RANDOM_PROVENANCE, "seed": seed})
    return model.eval()


def is_random_init(model: nn.Module) -> bool:
    """True for ``build_random_student`` models and checkpoints saved from them (their provenance says so)."""
    return spec_of(model).provenance.get("weights") == RANDOM_PROVENANCE


def _calibration_batch(n: int, h: int, w: int, gen: torch.Generator) -> torch.Tensor:
    """[n, 3, h, w]: half smooth blobs (image-like), half white noise — inputs spanning what tests and benchmarks
    feed."""
    coarse = torch.randn(n - n // 2, 3, max(1, h // 16), max(1, w // 16), generator=gen)
    smooth = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    smooth = smooth + 0.3 * torch.randn(smooth.shape, generator=gen)
    return torch.cat([smooth, torch.randn(n // 2, 3, h, w, generator=gen)])
