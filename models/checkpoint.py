"""The one checkpoint format: written by the training loop and ``save_checkpoint``, read by ``load_checkpoint``.

A checkpoint is ``torch.save`` of a dict::

    {"model_name": str,              # registry name (``create_model``)
     "model_spec": dict,             # ModelSpec.to_dict(): classes, input size, mean/std, builder_args, provenance…
     "state_dict": {name: tensor},   # on CPU
     ...}                            # a training run's last.pt adds optimizer, scheduler, epoch, best, config

Rebuilding needs no internet: ``create_model(model_name, **spec fields)`` with the spec's ``builder_args``, then
the state dict. Checkpoints written before ``ModelSpec`` (``"model_cfg"`` with ``"extra"`` and a top-level
``"provenance"``) still load.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sonolens.pipeline.errors import ModelError
from sonolens.pipeline.modelfile import ModelSpec

from .registry import create_model, spec_of

SPEC_KEY = "model_spec"
LEGACY_SPEC_KEY = "model_cfg"


def checkpoint_payload(model: nn.Module, *, model_name: str | None = None,
                       provenance: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The dict ``save_checkpoint`` writes: ``model_name`` (default: the spec's arch), ``model_spec`` and the CPU
    ``state_dict``. ``provenance`` replaces the spec's provenance (dataset, split, epoch, metrics…)."""
    spec = spec_of(model)
    if provenance is not None:
        spec = replace(spec, provenance=dict(provenance))
    return {
        "model_name": model_name or spec.arch,
        SPEC_KEY: spec.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }


def save_checkpoint(model: nn.Module, path: str | os.PathLike, *, model_name: str | None = None,
                    provenance: Mapping[str, Any] | None = None,
                    training_state: Mapping[str, Any] | None = None) -> Path:
    """Write ``checkpoint_payload`` (plus ``training_state``: optimizer, scheduler, epoch… for resuming) to ``path``
    atomically (temporary file + rename, so an interrupted run never leaves half a file). Returns ``path``."""
    payload = checkpoint_payload(model, model_name=model_name, provenance=provenance)
    clash = set(training_state or {}) & set(payload)
    if clash:
        raise ValueError(f"training_state must not replace checkpoint keys: {', '.join(sorted(clash))}")
    payload.update(training_state or {})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, str(tmp))
    os.replace(tmp, path)
    return path


def checkpoint_spec(ckpt: Mapping[str, Any]) -> tuple[str, ModelSpec]:
    """``(model_name, spec)`` of a loaded checkpoint dict, new or legacy layout; ``KeyError``/``ValueError``
    when it is not a sonolens checkpoint."""
    if SPEC_KEY in ckpt:
        d = dict(ckpt[SPEC_KEY])
    else:
        d = dict(ckpt[LEGACY_SPEC_KEY])
        if "extra" in d:
            d.setdefault("builder_args", d.pop("extra"))
        d.setdefault("provenance", dict(ckpt.get("provenance") or {}))
    return str(ckpt["model_name"]), ModelSpec.from_dict(d)


def load_checkpoint(path: str | os.PathLike) -> nn.Module:
    """Rebuild the model saved by ``save_checkpoint`` / the training loop (eval mode, on CPU).

    Its ``sonolens_spec`` is the saved one, provenance included, so an export of it carries dataset, split and
    config hash into the ONNX metadata. Every failure (missing or unreadable file, not a checkpoint, unknown
    model, weights that do not fit) is a one-line ``ModelError`` naming ``path``.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint {str(path)!r} does not exist")
    try:
        ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle/zip errors come in many types
        raise ModelError(f"{path}: not a readable torch checkpoint ({type(exc).__name__})") from exc
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ModelError(f"{path}: not a sonolens checkpoint (needs keys model_name, {SPEC_KEY}, state_dict)")
    try:
        name, spec = checkpoint_spec(ckpt)
    except (KeyError, ValueError, TypeError) as exc:
        raise ModelError(f"{path}: not a sonolens checkpoint ({type(exc).__name__}: {exc})") from exc
    try:
        model = create_model(name, **{f.name: getattr(spec, f.name) for f in fields(spec)})
    except KeyError as exc:
        raise ModelError(f"{path}: {exc.args[0]}") from exc
    try:
        model.load_state_dict(ckpt["state_dict"], strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelError(f"{path}: weights do not fit {name}: {first}") from exc
    return model.eval()
