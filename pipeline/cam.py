"""Turning the model's raw ``cam`` output into a displayable heat map (numpy + OpenCV only).

The ONNX model returns, for every class, ReLU(sum_k g_ck A_k) at the CAM layer's resolution (7x7 for a
224x224 input), not normalised. These functions do the rest exactly the way pytorch-grad-cam 1.5 does, so
the overlay shown live is the same map a ``GradCAM(...)`` call would produce on the PyTorch model:

``GradCAM.__call__`` = ``scale_cam_image(scale_cam_image(relu(cam), (W, H)))`` — normalise to [0, 1],
resize with ``cv2.resize`` (bilinear), then normalise again (``aggregate_multi_layers``). The second
normalisation is not a no-op: bilinear upsampling does not hit the coarse map's interior extremes exactly.
"""

from __future__ import annotations

import cv2
import numpy as np


def normalize_cam(cam2d: np.ndarray) -> np.ndarray:
    """``(img - min) / (1e-7 + max)`` as pytorch-grad-cam's ``scale_cam_image`` (float32).

    An all-zero map (no positive evidence for the class) stays all zero instead of dividing by zero.
    """
    img = np.asarray(cam2d, dtype=np.float32)
    img = img - np.min(img)
    return (img / (np.float32(1e-7) + np.max(img))).astype(np.float32, copy=False)


def upsample(cam2d: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a 2-D map to ``size = (H, W)`` with bilinear interpolation (``cv2.resize`` takes (W, H))."""
    h, w = int(size[0]), int(size[1])
    return cv2.resize(np.asarray(cam2d, dtype=np.float32), (w, h), interpolation=cv2.INTER_LINEAR)


def heatmap(cam2d: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The [0, 1] float32 heat map of one class's raw CAM ``[h, w]`` at ``size = (H, W)``, exactly as
    pytorch-grad-cam's ``GradCAM`` computes it: ReLU → normalise → bilinear resize → normalise.

    This is the one function that draws heat maps: the viewer and the burned-in recording
    (``overlay.blend_heatmap``) call it, and the parity test checks it against pytorch-grad-cam.
    """
    cam = np.maximum(np.asarray(cam2d, dtype=np.float32), 0)  # the ONNX graph already applies ReLU
    return normalize_cam(upsample(normalize_cam(cam), size))


def cam_for_display(cam_all: np.ndarray, class_idx: int, size: tuple[int, int]) -> np.ndarray:
    """``heatmap`` of class ``class_idx`` from the model's ``cam`` output for one image, ``[C, h, w]`` (a leading
    batch axis of 1 is accepted too).

    Raises ``ValueError`` for another shape and ``IndexError`` for a class out of range.
    """
    cams = np.asarray(cam_all)
    if cams.ndim == 4:
        if cams.shape[0] != 1:
            raise ValueError(f"cam_for_display takes one image, got a batch of {cams.shape[0]}")
        cams = cams[0]
    if cams.ndim != 3:
        raise ValueError(f"expected cam of shape [C, h, w], got {cams.shape}")
    if not 0 <= class_idx < cams.shape[0]:
        raise IndexError(f"class index {class_idx} out of range for {cams.shape[0]} classes")
    return heatmap(cams[class_idx], size)
