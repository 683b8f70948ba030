"""The "naive" engine: eager PyTorch for the logits and pytorch-grad-cam's ``GradCAM`` for the maps.

Same interface as ``pipeline.engines.OnnxEngine`` (``meta``, ``run``). It is the reference the fused ONNX
CAM is checked against, and the baseline the benchmarks time: one forward + backward per class, the way
Grad-CAM is usually wired into a viewer.

Difference to keep in mind: ``GradCAM`` already returns maps normalised to [0, 1] and resized to the
input size, so ``run`` gives cam ``[C, H, W]`` (input resolution) where ``OnnxEngine`` gives the raw
``[C, h, w]``. ``pipeline.cam.cam_for_display(cam, c, (H, W))`` turns either into the same display map
(on a GradCAM map at input size it is the identity up to 1e-7).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sonolens.pipeline.engines import EngineOutput
from sonolens.pipeline.errors import ModelError
from sonolens.pipeline.modelfile import ModelSpec

from .checkpoint import load_checkpoint
from .onnx_export import build_spec
from .random_student import is_random_init


class TorchEngine:
    """Eager PyTorch inference with pytorch-grad-cam ``GradCAM`` on the model's ``cam_layer``.

    ``model_or_checkpoint``: an ``nn.Module`` built by ``create_model`` (has ``sonolens_spec``) or the path
    of a checkpoint written by the training loop. ``threads`` > 0 sets ``torch.set_num_threads`` (global).
    """

    def __init__(self, model_or_checkpoint: nn.Module | str | os.PathLike, threads: int = 0):
        from_checkpoint = not isinstance(model_or_checkpoint, nn.Module)
        model: nn.Module = (model_or_checkpoint if isinstance(model_or_checkpoint, nn.Module)
                            else load_checkpoint(Path(model_or_checkpoint)))
        if getattr(model, "sonolens_spec", None) is None:
            raise ModelError("TorchEngine needs a model built by sonolens.models.create_model (no sonolens_spec)")
        if threads > 0:
            torch.set_num_threads(int(threads))
        self.model = model.eval()
        self.meta: ModelSpec = build_spec(model, {"trained": from_checkpoint and not is_random_init(model),
                                                  "provenance": {"cam": "pytorch-grad-cam GradCAM (eager)"}})
        self.has_cam = self.meta.cam_layer is not None
        self.cam_layer = model.get_submodule(self.meta.cam_layer) if self.has_cam else None

    def infer(self, x: np.ndarray, want_cam: bool = True) -> EngineOutput:
        """The worker's interface (``pipeline.engines.Engine``): no out-of-domain score in eager PyTorch."""
        logits, cam = self.run(x, want_cam)
        return EngineOutput(logits=logits, cam=cam)

    def run(self, x: np.ndarray, want_cam: bool = True,
            class_idx: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """``x``: float32 [1, 3, H, W]. Returns logits [C] and the GradCAM maps [C, H, W] (or None).

        One ``GradCAM`` call (forward + backward) per class; with ``class_idx`` only that class is
        computed and the other maps are zero.
        """
        from pytorch_grad_cam import GradCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        tensor = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        if not (want_cam and self.has_cam):
            with torch.no_grad():
                return self.model(tensor)[0].numpy(), None
        n_classes = len(self.meta.class_names)
        classes = range(n_classes) if class_idx is None else [int(class_idx)]
        cams = np.zeros((n_classes, *tensor.shape[2:]), np.float32)
        logits = None
        with GradCAM(model=self.model, target_layers=[self.cam_layer]) as grad_cam:
            for c in classes:
                cams[c] = grad_cam(input_tensor=tensor, targets=[ClassifierOutputTarget(c)])[0]
                if logits is None:
                    logits = grad_cam.outputs[0].detach().numpy().copy()
        assert logits is not None  # at least one class ran
        return logits, cams
