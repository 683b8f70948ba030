"""The student: timm's MobileNetV3-Small (about 1.5 M parameters, ~56 M MACs at 224x224).

Why this network: it runs a 224x224 forward in a few milliseconds on one ordinary CPU core, and its last
feature block feeds global average pooling directly, which lets ``models.cam_fusion`` compute Grad-CAM for every
class inside the ONNX graph without a backward pass.

Importing this module registers the builder (``models/__init__.py`` does that).

Head layout in timm 1.0.x (checked against 1.0.31)::

    blocks.5  (ConvBnAct 96 -> 576, hardswish)   <- the Grad-CAM layer
    global_pool (avg) -> conv_head (1x1, 576 -> 1024, bias) -> norm_head (Identity) -> act2 (hardswish)
    -> flatten -> classifier (Linear 1024 -> C)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sonolens.pipeline.errors import ModelError

from .adapters import StudentAdapter, backbone_stages, register_student
from .registry import register_model, with_overrides

STUDENT_ARCH = "mobilenetv3_small_100"

ADAPTER = register_student(StudentAdapter(
    arch=STUDENT_ARCH,
    cam_recipe="hardswish_head",
    cam_layer="blocks.5",
    stages=backbone_stages("bn1", 6),
    prelogits_width=1024,
))


@register_model(STUDENT_ARCH)
def mobilenetv3_small_100(
    pretrained: bool = False,
    pretrained_file: str | Path | None = None,
    **cfg: Any,
):
    """Build the student. ``cfg`` overrides ``ModelSpec`` fields (class_names, input_size…); anything else
    goes to ``timm.create_model`` (drop_rate, drop_path_rate…) and is not stored (it does not change the weights).

    ``pretrained=True`` downloads ImageNet weights through timm's Hugging Face hub path (needs internet);
    ``pretrained_file=PATH`` loads a local state_dict (.pth / .bin / .safetensors) instead — an ImageNet
    classifier of another width is dropped and re-initialised for ``class_names``, as timm does for the hub.
    """
    import timm

    spec, timm_kwargs = with_overrides(ADAPTER.default_spec(), **cfg)
    num_classes = spec.num_classes

    if pretrained_file is not None:
        model = timm.create_model(STUDENT_ARCH, pretrained=False, num_classes=num_classes, **timm_kwargs)
        _load_local_weights(model, Path(pretrained_file))
    elif pretrained:
        try:
            model = timm.create_model(STUDENT_ARCH, pretrained=True, num_classes=num_classes, **timm_kwargs)
        except Exception as exc:  # hub/network errors come in many types (OSError, HTTPError, HfHubHTTPError…)
            raise ModelError(
                f"could not download ImageNet weights for {STUDENT_ARCH} ({type(exc).__name__}; offline?); "
                f"download them on a machine with internet and pass pretrained_file=PATH"
            ) from exc
    else:
        model = timm.create_model(STUDENT_ARCH, pretrained=False, num_classes=num_classes, **timm_kwargs)

    model.sonolens_spec = spec
    return model


def _load_local_weights(model, path: Path) -> None:
    """Load a local state_dict (.pth/.bin/.safetensors, read by timm); a classifier of another width (an
    ImageNet head) is skipped and stays freshly initialised, everything else must match exactly."""
    import timm.models

    if not path.is_file():
        raise ModelError(f"pretrained_file {str(path)!r} does not exist")
    try:
        state = timm.models.load_state_dict(str(path))
    except Exception as exc:  # pickle / safetensors / zip errors
        raise ModelError(f"cannot read pretrained_file {str(path)!r} ({type(exc).__name__})") from exc
    own = model.state_dict()
    head = [k for k in ("classifier.weight", "classifier.bias") if k in state and k in own
            and state[k].shape != own[k].shape]
    for key in head:
        del state[key]
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if k not in head]
    if missing or result.unexpected_keys:
        bad = (missing or result.unexpected_keys)[:3]
        raise ModelError(f"pretrained_file {str(path)!r} does not fit {STUDENT_ARCH}: "
                         f"{'missing' if missing else 'unexpected'} keys {', '.join(bad)}…")
