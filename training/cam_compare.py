"""``sonolens cam-compare --models A.onnx B.onnx --data DIR [--split-file CSV --split test]``: Grad-CAM of two
models side by side (NanoRay V2's Figure 1), and numbers behind "the distilled student's maps are smoother and
more anatomical" over a whole split.

Why numbers and not only a figure: eight hand-picked heat maps can show anything. Here the figure's images are a
fixed, seeded selection (``--seed``; stratified over the true labels, see ``select_figure_images``), and every
image of the split contributes to three per-image measures, compared *paired* (same image, both models):

* ``lung_mass`` — share of the CAM's mass inside the lung field (``lung_mask``, a heuristic, below). A map spread
  uniformly would score the lung field's area share (``mask.mean_area`` in the JSON: the chance level).
  Only with a lung mask: ``--mask lung``, or ``--mask auto`` (default) when both models have a ``pneumonia`` class.
* ``tv`` — total variation (roughness): mean absolute gradient of the [0, 1] map at ``--map-size``² (forward
  differences, averaged over x and y). Lower = smoother. 0 for a constant map.
* ``entropy`` — Shannon entropy of the map read as a distribution (p = map / Σ map), divided by log(#pixels):
  1 = spread evenly over the image, lower = concentrated.

Each model's map is the one the runtime overlays: the raw ``cam`` output of ``OnnxEngine`` for the class it
explains (``--cam-class predicted`` = each model's top class, as ``pipeline.worker`` does; or ``true``, or a class
name), made a [0, 1] map at ``--map-size`` by ``pipeline.cam.cam_for_display`` (pytorch-grad-cam's normalise →
bilinear resize → normalise). Images are preprocessed exactly as the runtime does (grayscale → INTER_AREA resize →
the model file's mean/std: ``pipeline.preprocess.preprocess_image``), each model at its own input size. A map
that is all zero (no positive evidence for the class) has no mass to measure: its metrics are NaN, counted in
``empty_maps``, and left out of the means (and of the paired comparison for that image).

Statistics: per model mean ± percentile-bootstrap 95 % CI over images (``--n-boot``, seeded); paired: mean of
(second − first) per image, its bootstrap CI, a two-sided sign-flip permutation p-value, and the share of images
where the second model's value is higher. Caveat: TV and entropy depend on the CAM grid (5×5 at 160 px, 7×7 at
224 px): compare models with the same grid (the JSON lists each model's ``cam_grid``).

Lung mask heuristic (``lung_mask``; pediatric AP chest films squashed to a square fill the frame, which the
prior relies on): blur; outside air = dark (< 0.4 × Otsu) regions touching the image border, and the body is the
largest remaining component; the mediastinum is the brightest column of the central band; per side, an ellipse
lung prior spans the half-thorax (between the body edge and the mediastinum, 10–86 % of the body's height); within
it, Otsu on a strongly blurred copy (σ = 6 px, so ribs do not split the lung) keeps the dark part, an opening
(13 px) cuts bridges to the lateral soft tissue, the component overlapping the prior's core is kept, grown back,
closed, hole-filled and clipped to the prior (× 1.1). When that leaves < 35 % of the prior or < 40 % of its core
(dense consolidation: the diseased lung is not dark, and the dark part found is soft tissue around it) the side
falls back to the prior ellipse (counted in ``mask_stats.sides_prior``; ~19 % of
sides on a 300-image sample, more often on pneumonia). ``lung_masks.png`` shows the masks for a visual check.
It is a heuristic, not a segmentation model: both models are scored against the same mask on every image, so the
paired difference is what to read.

Outputs in ``--out-dir``: ``cam_figure.png``, ``cam_metrics.json``, ``cam_metrics.md``, ``cam_per_image.csv``, and
``lung_masks.png`` with a lung mask. Research use only.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from sonolens.pipeline.errors import ConfigError

if TYPE_CHECKING:
    from sonolens.pipeline.engines import OnnxEngine

METRICS = ("lung_mass", "tv", "entropy")
METRIC_INFO = {
    "lung_mass": "share of CAM mass inside the lung field (higher = more on the lungs)",
    "tv": "total variation, mean |gradient| of the [0,1] map (lower = smoother)",
    "entropy": "normalised entropy of the map (1 = spread evenly, lower = concentrated)",
}
LUNG_CLASS = "pneumonia"


# --------------------------------------------------------------------------------------------------------
# Lung field heuristic
# --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LungMask:
    """A boolean ``size × size`` lung-field mask and how each side (image left, image right) was found:
    ``"otsu"`` (intensity-refined), ``"prior"`` (the ellipse prior alone) or ``"none"``."""

    mask: np.ndarray
    sides: tuple[str, str]


def _disk(d: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (d, d))


def _largest_component(mask: np.ndarray) -> np.ndarray:
    n, lab, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return np.zeros(mask.shape, bool)
    return lab == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


def _border_connected(mask: np.ndarray) -> np.ndarray:
    n, lab = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    edge = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    return np.isin(lab, edge[edge > 0])


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` with every region it encloses filled (flood fill of the outside from a 1-px frame)."""
    m = np.pad(mask.astype(np.uint8), 1)
    outside = m.copy()
    cv2.floodFill(outside, np.zeros((m.shape[0] + 2, m.shape[1] + 2), np.uint8), (0, 0), 1)
    return (m | (1 - outside)).astype(bool)[1:-1, 1:-1]


def _otsu(values: np.ndarray) -> float:
    t, _ = cv2.threshold(np.ascontiguousarray(values, np.uint8).reshape(1, -1), 0, 255,
                         cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return float(t)


def lung_mask(gray: np.ndarray, size: int = 224) -> LungMask:
    """Lung-field heuristic for a frontal chest X-ray (``gray``: H×W uint8); see the module docstring."""
    g0 = cv2.resize(np.asarray(gray, np.uint8), (size, size), interpolation=cv2.INTER_AREA)
    g = cv2.GaussianBlur(g0, (0, 0), 2.0)
    gs = cv2.GaussianBlur(g0, (0, 0), 6.0 * size / 224)
    t = _otsu(g)
    air = cv2.dilate(_border_connected(g < 0.4 * t).astype(np.uint8), _disk(7)).astype(bool)
    body = _largest_component(~air)
    if body.sum() < 0.1 * size * size:  # no body found (a blank or inverted image): use the whole frame
        body = np.ones((size, size), bool)
    ys, xs = np.nonzero(body)
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()), int(xs.min()), int(xs.max())
    h, w = y1 - y0 + 1, x1 - x0 + 1
    ba, bb = x0 + int(0.35 * w), x0 + max(int(0.65 * w), int(0.35 * w) + 1)
    band = g[y0 + int(0.25 * h): y0 + max(int(0.6 * h), int(0.25 * h) + 1), ba:bb].astype(np.float32).mean(axis=0)
    band = cv2.GaussianBlur(band.reshape(1, -1), (0, 0), 3).ravel()
    xm = ba + int(np.argmax(band))  # mediastinum / spine: the brightest column of the central band
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    out = np.zeros((size, size), bool)
    sides: list[str] = []
    for ca, cb in ((x0 + 0.08 * w, xm - 0.05 * w), (xm + 0.05 * w, x1 - 0.08 * w)):
        if cb - ca < 4:
            sides.append("none")
            continue
        cx, cy, ax, ay = (ca + cb) / 2, y0 + 0.48 * h, (cb - ca) / 2, 0.38 * h
        r2 = ((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2
        prior, wide, core = (r2 <= 1) & body, (r2 <= 1.1 ** 2) & body, (r2 <= 0.5) & body
        if prior.sum() < 50:
            sides.append("none")
            continue
        cand = wide & (gs <= _otsu(gs[prior]))
        opened = cv2.morphologyEx(cand.astype(np.uint8), cv2.MORPH_OPEN, _disk(13))
        n, lab = cv2.connectedComponents(opened, connectivity=8)
        comp = np.zeros_like(out)
        if n > 1:
            overlap = np.bincount(lab[core], minlength=n)
            overlap[0] = 0
            if overlap.max() > 0:
                comp = lab == int(np.argmax(overlap))
        comp = cv2.dilate(comp.astype(np.uint8), _disk(7)).astype(bool) & cand  # give back what opening shaved
        comp = fill_holes(cv2.morphologyEx(comp.astype(np.uint8), cv2.MORPH_CLOSE, _disk(9)).astype(bool)) & wide
        if comp.sum() < 0.35 * prior.sum() or (comp & core).sum() < 0.4 * core.sum():
            comp = prior
            sides.append("prior")
        else:
            sides.append("otsu")
        out |= comp
    return LungMask(out, (sides[0], sides[1]))


# --------------------------------------------------------------------------------------------------------
# Per-map measures
# --------------------------------------------------------------------------------------------------------
def cam_total_variation(cam01: np.ndarray) -> float:
    """Mean absolute forward difference of a 2-D map, averaged over the x and y directions."""
    m = np.asarray(cam01, np.float64)
    if m.ndim != 2 or min(m.shape) < 2:
        raise ValueError(f"expected a 2-D map of at least 2×2, got {m.shape}")
    return float(0.5 * (np.abs(np.diff(m, axis=1)).mean() + np.abs(np.diff(m, axis=0)).mean()))


def cam_entropy(cam01: np.ndarray) -> float:
    """Shannon entropy of the map as a distribution over pixels, / log(#pixels) ∈ [0, 1]; NaN for an empty map."""
    m = np.clip(np.asarray(cam01, np.float64), 0, None)
    total = m.sum()
    if total <= 0 or m.size < 2:
        return math.nan
    p = m.ravel() / total
    p = p[p > 0]
    return float(-(p * np.log(p)).sum() / math.log(m.size))


def cam_mass_share(cam01: np.ndarray, mask: np.ndarray) -> float:
    """Σ map·mask / Σ map; NaN for an empty map."""
    m = np.clip(np.asarray(cam01, np.float64), 0, None)
    total = m.sum()
    if total <= 0:
        return math.nan
    return float(m[np.asarray(mask, bool)].sum() / total)


def map_metrics(cam01: np.ndarray, mask: np.ndarray | None) -> dict[str, float]:
    """The three measures of one [0, 1] map (NaN for an all-zero map; ``lung_mass`` only with a mask)."""
    empty = not np.any(np.asarray(cam01) > 0)
    out = {"tv": math.nan if empty else cam_total_variation(cam01), "entropy": cam_entropy(cam01)}
    if mask is not None:
        out["lung_mass"] = cam_mass_share(cam01, mask)
    return out


# --------------------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------------------
def bootstrap_mean(values: Sequence[float] | np.ndarray, n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Mean, percentile-bootstrap 95 % CI and n of the finite ``values`` (CI None when n < 2)."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"mean": None, "ci95": None, "n": 0}
    res: dict[str, Any] = {"mean": float(v.mean()), "ci95": None, "n": int(v.size)}
    if v.size >= 2 and n_boot > 0:
        rng = np.random.default_rng(seed)
        means = v[rng.integers(0, v.size, size=(int(n_boot), v.size))].mean(axis=1)
        res["ci95"] = [float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))]
    return res


def paired_comparison(first: Sequence[float] | np.ndarray, second: Sequence[float] | np.ndarray, n_boot: int = 2000,
                      seed: int = 0, n_perm: int = 10000) -> dict[str, Any]:
    """second − first over the images where both are finite: mean difference with bootstrap 95 % CI, a
    two-sided sign-flip permutation p-value, and the share of images where second > first."""
    a, b = np.asarray(first, np.float64), np.asarray(second, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired values of different lengths: {a.shape} vs {b.shape}")
    ok = np.isfinite(a) & np.isfinite(b)
    d = b[ok] - a[ok]
    res = bootstrap_mean(d, n_boot, seed)
    res = {"mean_diff": res["mean"], "ci95": res["ci95"], "n": res["n"], "p_signflip": None,
           "frac_second_higher": float((d > 0).mean()) if d.size else None}
    if d.size >= 2 and n_perm > 0:
        rng = np.random.default_rng(seed + 1)
        signs = rng.choice(np.array([-1.0, 1.0]), size=(int(n_perm), d.size))
        null = np.abs((signs * d).mean(axis=1))
        res["p_signflip"] = float((1 + np.sum(null >= abs(d.mean()) - 1e-15)) / (n_perm + 1))
    return res


# --------------------------------------------------------------------------------------------------------
# Running the two models
# --------------------------------------------------------------------------------------------------------
@dataclass
class ModelRun:
    """One model's outputs over the images: probabilities, the explained class and the display maps' metrics."""

    name: str
    path: str
    meta: Any
    cam_grid: tuple[int, int] | None = None
    probs: list[np.ndarray] = field(default_factory=list)
    cam_class: list[int] = field(default_factory=list)
    metrics: list[dict[str, float]] = field(default_factory=list)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, np.float64) - np.max(z)
    e = np.exp(z)
    return e / e.sum()


def select_figure_images(labels: Sequence[str], files: Sequence[str], n: int, seed: int = 0) -> list[int]:
    """Indices of ``n`` images for the figure: classes taken in turn (sorted by name), each class's images in a
    seeded random order (``numpy.random.default_rng(seed)``); returned sorted by (label, file) — reproducible
    from the split and the seed alone."""
    rng = np.random.default_rng(seed)
    classes = sorted(set(labels))
    queues = {}
    for c in classes:
        idx = sorted((i for i, lab in enumerate(labels) if lab == c), key=lambda i: files[i])
        queues[c] = [idx[k] for k in rng.permutation(len(idx))]
    chosen: list[int] = []
    while len(chosen) < min(n, len(labels)):
        for c in classes:
            if queues[c] and len(chosen) < n:
                chosen.append(queues[c].pop(0))
    return sorted(chosen, key=lambda i: (labels[i], files[i]))


def _resolve_cam_class(spec: str, class_names: Sequence[str]) -> str | int:
    if spec in ("predicted", "true"):
        return spec
    names = [c.lower() for c in class_names]
    if spec.lower() not in names:
        raise ConfigError(f"--cam-class {spec!r}: not 'predicted', 'true' or a class of the models "
                          f"({', '.join(class_names)})")
    return names.index(spec.lower())


def compare(model_paths: Sequence[str | Path], samples: Sequence[Any], *,
            names: Sequence[str] = ("baseline", "distilled"),
            mask: str = "auto", cam_class: str = "predicted", map_size: int = 224, n_figure: int = 8,
            seed: int = 0, n_boot: int = 2000, out_dir: str | Path = "cam_compare",
            n_mask_debug: int = 16) -> dict[str, Any]:
    """Run both models over ``samples`` (``training.data.Sample``), write the figure, tables and JSON to
    ``out_dir`` and return the JSON's content."""
    _check_arguments(model_paths, names, samples, map_size)
    engines = _open_engines(model_paths)
    classes = _common_classes(engines, samples)
    if mask not in ("auto", "lung", "none"):
        raise ConfigError(f"--mask must be auto, lung or none, not {mask!r}")
    use_lung = mask == "lung" or (mask == "auto" and LUNG_CLASS in classes)
    which = _resolve_cam_class(cam_class, classes)
    runs = [ModelRun(n, str(p), e.meta, e.cam_size) for n, p, e in zip(names, model_paths, engines)]
    y = np.array([classes.index(s.label) for s in samples])
    labels, files = [s.label for s in samples], [str(s.path) for s in samples]
    fig_idx = set(select_figure_images(labels, files, n_figure, seed))
    debug_idx = set(select_figure_images(labels, files, n_mask_debug, seed)) if use_lung else set()
    images = _run_models(engines, runs, samples, y, which, map_size, use_lung, fig_idx | debug_idx)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metric_names = [m for m in METRICS if use_lung or m != "lung_mass"]
    result: dict[str, Any] = {
        "n_images": len(samples),
        "classes": list(classes),
        "cam_class": cam_class,
        "map_size": map_size,
        "mask": "lung" if use_lung else "none",
        "seed": seed,
        "n_boot": n_boot,
        "comparison": f"{names[1]} - {names[0]}",
        "models": {run.name: _model_summary(run, y) for run in runs},
        "metrics": _metric_stats(runs, metric_names, n_boot, seed),
        "metric_info": {m: METRIC_INFO[m] for m in metric_names},
    }
    if runs[0].cam_grid != runs[1].cam_grid:
        result["warning"] = (f"CAM grids differ ({runs[0].cam_grid} vs {runs[1].cam_grid}): tv and entropy partly "
                             f"measure the grid, not the model")
    if use_lung:
        result["mask_stats"] = _mask_stats(images.masks)
    result["per_image_csv"] = str(_write_per_image_csv(out / "cam_per_image.csv", samples, runs, classes,
                                                       metric_names, images.masks if use_lung else None))
    result["figure"] = _write_figure(out / "cam_figure.png", images, _in_order(fig_idx, labels, files), runs,
                                     samples, names, classes)
    if use_lung:
        result["lung_masks_png"] = str(_write_mask_debug(out / "lung_masks.png", images,
                                                         _in_order(debug_idx, labels, files), samples))
    (out / "cam_metrics.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    (out / "cam_metrics.md").write_text(markdown_table(result), encoding="utf-8")
    return result


def _check_arguments(model_paths: Sequence[str | Path], names: Sequence[str], samples: Sequence[Any],
                     map_size: int) -> None:
    if len(model_paths) != 2 or len(names) != 2:
        raise ConfigError("cam-compare takes exactly two models (and two names)")
    if names[0] == names[1]:
        raise ConfigError(f"the two models need different names (got {names[0]!r} twice)")
    if not samples:
        raise ConfigError("no images to compare on")
    if map_size < 8:
        raise ConfigError(f"--map-size must be at least 8, got {map_size}")


def _open_engines(model_paths: Sequence[str | Path]) -> list[OnnxEngine]:
    """Both ONNX files opened; each must have the fused ``cam`` output."""
    from sonolens.pipeline.engines import OnnxEngine

    engines = []
    for p in model_paths:
        if Path(p).suffix.lower() != ".onnx":
            raise ConfigError(f"{p}: cam-compare takes ONNX model files (export a checkpoint with 'sonolens export')")
        engines.append(OnnxEngine(str(p)))
    for e in engines:
        if not e.has_cam:
            raise ConfigError(f"{e.path}: the model has no 'cam' output")
    return engines


def _common_classes(engines: Sequence[OnnxEngine], samples: Sequence[Any]) -> tuple[str, ...]:
    """The models' classes (lowercase), which must be the same for both and include every label of ``samples``."""
    classes = tuple(c.lower() for c in engines[0].meta.class_names)
    if tuple(c.lower() for c in engines[1].meta.class_names) != classes:
        raise ConfigError(f"the models' classes differ: {engines[0].meta.class_names} vs {engines[1].meta.class_names}")
    unknown = sorted({s.label for s in samples} - set(classes))
    if unknown:
        raise ConfigError(f"dataset labels {', '.join(unknown)} are not among the models' classes "
                          f"({', '.join(classes)})")
    return classes


@dataclass(frozen=True)
class ImagePass:
    """What the pass over the images keeps besides the runs: each image's lung mask (None without one) and, for
    the images of the figures (by index), the image and both models' display maps at the map size."""

    masks: list[LungMask | None]
    gray: dict[int, np.ndarray]
    maps: dict[int, list[np.ndarray]]


def _run_models(engines: Sequence[OnnxEngine], runs: Sequence[ModelRun], samples: Sequence[Any], y: np.ndarray,
                which: str | int, map_size: int, use_lung: bool, keep: set[int]) -> ImagePass:
    """Both models on every image (outputs and measures appended to ``runs``); the lung mask when ``use_lung``."""
    from sonolens.pipeline.preprocess import resize_gray

    from .data import load_gray

    masks: list[LungMask | None] = []
    kept_gray: dict[int, np.ndarray] = {}
    kept_maps: dict[int, list[np.ndarray]] = {}
    for i, s in enumerate(samples):
        gray = load_gray(s.path)
        lm = lung_mask(gray, map_size) if use_lung else None
        masks.append(lm)
        maps = [_explain(run, eng, gray, which, int(y[i]), map_size, lm) for run, eng in zip(runs, engines)]
        if i in keep:
            kept_gray[i] = resize_gray(gray, (map_size, map_size))
            kept_maps[i] = maps
    return ImagePass(masks, kept_gray, kept_maps)


def _explain(run: ModelRun, engine: OnnxEngine, gray: np.ndarray, which: str | int, true_class: int, map_size: int,
             lm: LungMask | None) -> np.ndarray:
    """One model on one image: its probabilities, explained class and map measures appended to ``run``; returns
    the [0, 1] display map (``which``: "predicted", "true" or a class index)."""
    from sonolens.pipeline.cam import cam_for_display
    from sonolens.pipeline.preprocess import preprocess_image

    logits, cam = engine.run(preprocess_image(gray, engine.meta), want_cam=True)
    assert cam is not None  # every engine has_cam (checked in _open_engines)
    probs = _softmax(logits)
    c = int(np.argmax(probs)) if which == "predicted" else true_class if which == "true" else int(which)
    m = cam_for_display(cam, c, (map_size, map_size))
    run.probs.append(probs)
    run.cam_class.append(c)
    run.metrics.append(map_metrics(m, lm.mask if lm is not None else None))
    return m


def _model_summary(run: ModelRun, y: np.ndarray) -> dict[str, Any]:
    pred = np.stack(run.probs).argmax(axis=1)
    return {
        "path": run.path, "arch": run.meta.arch, "input_size": list(run.meta.input_size),
        "cam_grid": list(run.cam_grid) if run.cam_grid else None, "trained": bool(run.meta.trained),
        "accuracy": float((pred == y).mean()),
        "empty_maps": int(sum(1 for m in run.metrics if not math.isfinite(m["tv"]))),
    }


def _metric_stats(runs: Sequence[ModelRun], metric_names: Sequence[str], n_boot: int, seed: int
                  ) -> dict[str, dict[str, Any]]:
    """Per metric: each model's mean with its bootstrap CI, and the paired comparison (seeds fixed per metric)."""
    stats = {}
    for k, metric in enumerate(metric_names):
        vals = [np.array([m[metric] for m in run.metrics]) for run in runs]
        stats[metric] = {
            runs[0].name: bootstrap_mean(vals[0], n_boot, seed + 10 * k),
            runs[1].name: bootstrap_mean(vals[1], n_boot, seed + 10 * k + 1),
            "paired": paired_comparison(vals[0], vals[1], n_boot, seed + 10 * k + 2),
        }
    return stats


def _mask_stats(masks: Sequence[LungMask | None]) -> dict[str, Any]:
    sides = [s for lm in masks if lm is not None for s in lm.sides]
    return {"mean_area": float(np.mean([lm.mask.mean() for lm in masks if lm is not None])),
            "sides_otsu": sides.count("otsu"), "sides_prior": sides.count("prior"), "sides_none": sides.count("none")}


def _in_order(idx: set[int], labels: Sequence[str], files: Sequence[str]) -> list[int]:
    return sorted(idx, key=lambda i: (labels[i], files[i]))


def _write_per_image_csv(path: Path, samples: Sequence[Any], runs: Sequence[ModelRun], classes: Sequence[str],
                         metric_names: Sequence[str], masks: Sequence[LungMask | None] | None) -> Path:
    """One row per image: each model's probabilities, explained class and measures; the lung mask's area and
    sides when there are masks."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        head = ["file", "label"]
        for run in runs:
            head += [f"{run.name}_p_{c}" for c in classes] + [f"{run.name}_cam_class"] + \
                    [f"{run.name}_{m}" for m in metric_names]
        if masks is not None:
            head += ["lung_area", "lung_sides"]
        w.writerow(head)
        for i, s in enumerate(samples):
            row: list[Any] = [str(s.path), s.label]
            for run in runs:
                row += [f"{p:.6f}" for p in run.probs[i]] + [classes[run.cam_class[i]]]
                row += [f"{run.metrics[i][m]:.6f}" for m in metric_names]
            if masks is not None:
                lm = masks[i]
                assert lm is not None  # with masks, every image has one
                row += [f"{lm.mask.mean():.4f}", "/".join(lm.sides)]
            w.writerow(row)
    return path


def _write_figure(path: Path, images: ImagePass, order: Sequence[int], runs: Sequence[ModelRun],
                  samples: Sequence[Any], names: Sequence[str], classes: Sequence[str]) -> dict[str, Any]:
    """``save_figure`` on the images ``order`` lists; returns the JSON's ``figure`` entry."""
    files = [str(samples[i].path) for i in order]
    save_figure(path, [images.gray[i] for i in order], [images.maps[i] for i in order],
                [samples[i].label for i in order], [Path(f).name for f in files],
                [[run.probs[i] for run in runs] for i in order], [[run.cam_class[i] for run in runs] for i in order],
                [m.mask if m is not None else None for m in (images.masks[i] for i in order)], names, classes)
    return {"path": str(path), "files": files}


def _write_mask_debug(path: Path, images: ImagePass, order: Sequence[int], samples: Sequence[Any]) -> Path:
    masks = [m for m in (images.masks[i] for i in order) if m is not None]  # with lung masks, none is None
    return save_mask_debug(path, [images.gray[i] for i in order], masks,
                           [f"{samples[i].label} {Path(samples[i].path).name}" for i in order])


# --------------------------------------------------------------------------------------------------------
# Figures and tables
# --------------------------------------------------------------------------------------------------------
def _overlay(gray: np.ndarray, cam01: np.ndarray) -> np.ndarray:
    from sonolens.pipeline.overlay import blend_heatmap

    h, w = gray.shape
    return blend_heatmap(gray, cam01, (0, 0, w, h), alpha=0.45, colormap="jet")


def _contour(rgb: np.ndarray, mask: np.ndarray, color=(0, 255, 0)) -> np.ndarray:
    out = rgb.copy()
    cs, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, cs, -1, color, 1)
    return out


def save_figure(path: Path, grays, maps, labels, names_img, probs, cam_cls, masks, model_names, classes) -> Path:
    """Per image three panels: the image (lung field outlined when there is a mask), model 1's CAM, model 2's;
    more than four images are laid out in two groups side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(len(grays), 1)
    groups = 2 if n > 4 else 1
    rows = -(-n // groups)
    fig, axes = plt.subplots(rows, 3 * groups, figsize=(7.8 * groups, 3.05 * rows + 0.5), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    pos = classes.index(LUNG_CLASS) if LUNG_CLASS in classes else len(classes) - 1
    for k in range(len(grays)):
        r, c0 = k % rows, 3 * (k // rows)
        rgb = cv2.cvtColor(grays[k], cv2.COLOR_GRAY2RGB)
        axes[r, c0].imshow(_contour(rgb, masks[k]) if masks[k] is not None else rgb)
        axes[r, c0].set_title(f"true: {labels[k]}\n{names_img[k][:30]}", fontsize=8)
        for j in range(2):
            p = probs[k][j]
            pred = classes[int(np.argmax(p))]
            axes[r, c0 + j + 1].imshow(_overlay(grays[k], maps[k][j]))
            axes[r, c0 + j + 1].set_title(f"{model_names[j]}: P({classes[pos]}) {p[pos]:.2f} → {pred}\n"
                                          f"CAM of '{classes[cam_cls[k][j]]}'", fontsize=8)
    fig.suptitle(f"Grad-CAM, {model_names[0]} vs {model_names[1]} (research use only)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / (3.05 * rows + 0.5)))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def save_mask_debug(path: Path, grays, masks: Sequence[LungMask], titles: Sequence[str], cols: int = 4) -> Path:
    """A grid of images with their lung masks (red fill, green outline) and how each side was found."""
    tiles = []
    for g, lm, title in zip(grays, masks, titles):
        rgb = cv2.cvtColor(g, cv2.COLOR_GRAY2RGB)
        tint = rgb.copy()
        tint[lm.mask] = (0.55 * tint[lm.mask] + np.array([115, 0, 0])).astype(np.uint8)
        tile = _contour(tint, lm.mask)
        cv2.putText(tile, title[:30], (2, 11), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (255, 255, 0), 1, cv2.LINE_AA)
        cv2.putText(tile, "/".join(lm.sides), (2, tile.shape[0] - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.33,
                    (255, 255, 0), 1, cv2.LINE_AA)
        tiles.append(tile)
    if not tiles:
        return path
    while len(tiles) % cols:
        tiles.append(np.zeros_like(tiles[0]))
    grid = np.vstack([np.hstack(tiles[i:i + cols]) for i in range(0, len(tiles), cols)])
    cv2.imwrite(str(path), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    return path


def _fmt(stat: dict[str, Any], key: str = "mean", digits: int = 4) -> str:
    v = stat.get(key)
    if v is None:
        return "–"
    ci = stat.get("ci95")
    return f"{v:.{digits}f}" + (f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci else "")


def markdown_table(result: dict[str, Any]) -> str:
    """The comparison as a Markdown table (means with 95 % bootstrap CIs, paired difference, p-value)."""
    a, b = list(result["models"])
    lines = [f"CAM comparison on {result['n_images']} images (map {result['map_size']}², CAM of the "
             f"{result['cam_class']} class, mask: {result['mask']}); difference = {b} − {a}, paired per image.", "",
             f"| metric | {a} | {b} | {b} − {a} | p (sign-flip) | {b} higher | n |", "|---|---|---|---|---|---|---|"]
    for metric, r in result["metrics"].items():
        p = r["paired"]
        frac = f"{100 * p['frac_second_higher']:.0f} %" if p["frac_second_higher"] is not None else "–"
        pv = f"{p['p_signflip']:.4f}" if p["p_signflip"] is not None else "–"
        lines.append(f"| {metric} | {_fmt(r[a])} | {_fmt(r[b])} | {_fmt(p, 'mean_diff')} | {pv} | {frac} | {p['n']} |")
    lines.append("")
    for metric, info in result["metric_info"].items():
        lines.append(f"- `{metric}`: {info}")
    if "mask_stats" in result:
        ms = result["mask_stats"]
        lines.append(f"- lung field: mean area {100 * ms['mean_area']:.1f} % of the image (the `lung_mass` of a "
                     f"uniform map); sides refined by intensity {ms['sides_otsu']}, prior ellipse "
                     f"{ms['sides_prior']}, none {ms['sides_none']}")
    for name, m in result["models"].items():
        grid = "×".join(map(str, m["cam_grid"])) if m["cam_grid"] else "?"
        size = f"{m['input_size'][0]}×{m['input_size'][1]}"
        lines.append(f"- {name}: {Path(m['path']).name}, {m['arch']}, input {size}, "
                     f"CAM grid {grid}, accuracy on these images {m['accuracy']:.4f}, empty maps {m['empty_maps']}"
                     + ("" if m["trained"] else " (NOT a trained model)"))
    if "warning" in result:
        lines.append(f"- warning: {result['warning']}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sonolens cam-compare",
        description="Grad-CAM maps of two ONNX models side by side on the same images (a reproducible figure), "
                    "plus per-image smoothness / concentration / lung-field measures compared pairwise with "
                    "bootstrap CIs over the whole split. Research use only.")
    p.add_argument("--models", nargs=2, required=True, metavar=("FIRST", "SECOND"),
                   help="two sonolens ONNX files, e.g. BASELINE DISTILLED (differences are SECOND - FIRST)")
    p.add_argument("--names", nargs=2, default=("baseline", "distilled"), metavar=("NAME1", "NAME2"),
                   help="labels for the two models (default: baseline distilled)")
    p.add_argument("--data", required=True, help="dataset root (one sub-folder per class, or the root of --split-file)")
    p.add_argument("--split-file", default=None, help="split CSV (file,label,group,split), files relative to --data")
    p.add_argument("--split", default=None, help="split name(s) from --split-file, comma-separated (e.g. test)")
    p.add_argument("--n-figure", type=int, default=8, help="images in the figure (default 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the figure's image selection and the bootstrap")
    p.add_argument("--out-dir", default="cam_compare", help="where the PNGs, JSON, Markdown and CSV go")
    p.add_argument("--mask", choices=("auto", "lung", "none"), default="auto",
                   help="lung-field mask for lung_mass: auto = when the models have a 'pneumonia' class")
    p.add_argument("--cam-class", default="predicted",
                   help="which class's CAM: predicted (each model's top class, as the runtime), true, or a class name")
    p.add_argument("--map-size", type=int, default=224, help="side of the compared [0,1] maps (default 224)")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--limit", type=int, default=None, help="only the first N images of the split (quick looks)")
    return p


def cli_main(argv: list[str]) -> int:
    from .data import read_class_folders, read_split_csv

    args = _parser().parse_args(argv)
    if args.split and not args.split_file:
        raise ConfigError("--split needs --split-file")
    if args.n_figure < 1:
        raise ConfigError(f"--n-figure must be at least 1, got {args.n_figure}")
    if args.split_file:
        samples = read_split_csv(args.split_file, args.data, args.split.split(",") if args.split else None)
    else:
        samples = read_class_folders(args.data)
    if args.limit:
        samples = samples[: args.limit]
    result = compare(args.models, samples, names=args.names, mask=args.mask, cam_class=args.cam_class,
                     map_size=args.map_size, n_figure=args.n_figure, seed=args.seed, n_boot=args.n_boot,
                     out_dir=args.out_dir)
    print(markdown_table(result), end="", flush=True)
    out = Path(args.out_dir)
    print(f"figure: {result['figure']['path']}; metrics: {out / 'cam_metrics.json'}, {out / 'cam_metrics.md'}"
          + (f"; lung masks: {result['lung_masks_png']}" if "lung_masks_png" in result else ""), file=sys.stderr)
    return 0
