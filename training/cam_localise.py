"""``sonolens cam-localise``: does the Grad-CAM heat map point at the lesion? Measured against radiologists' masks.

Sets (``dataset`` is a column of every table and row): the lesion images of ``breast_lesions_usg`` (252; external)
and of the ``bus_uclm`` test patients of ``--split-file`` — less the 4 HESN images whose mask had to be stretched
onto the image (``mask_note``: alignment approximate). BUSI has no masks in this copy.

Per image, per model (an ONNX file with the fused ``cam`` output — the map the runtime overlays):

* the map: ``pipeline.cam.heatmap(cam[c], (H, W))`` (pytorch-grad-cam's normalise → bilinear → normalise) at the
  size of the region the model saw (the full image with ``--roi none``), for the class ``c`` = the true lesion
  class (``--cam-class true``, default: "where is the evidence for what this lesion is"), or the model's top
  class (``predicted``: what the overlay shows);
* ``mass_in_mask`` — Σ map·mask / Σ map. A map spread uniformly scores the mask's area share (``mask_area``:
  the chance level, reported beside it);
* ``pointing_hit`` — 1 when the map's maximum lies inside the mask (the pointing game, Zhang et al. 2016, with no
  tolerance margin); chance = the mask's area share;
* an all-zero map (no positive evidence for the class) has no mass and no peak: NaN, counted in ``empty_maps``.

Statistics: mean and percentile-bootstrap 95 % CI over **patients** (``--n-boot``, seeded), and the paired mean of
(measure − chance) with its CI. Caveat: the CAM grid is 7×7 at 224 px, so a lesion smaller than one cell (1/49 of
the image) can only be hit by the peak, not covered by the mass. Outputs in ``--out-dir``: ``cam_localisation.json``,
``cam_localisation.md``, ``cam_localisation_per_image.csv``, ``cam_localisation_<dataset>.jpg`` (a seeded
selection: the image with the mask outline, and each model's map).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from sonolens.pipeline.errors import ConfigError

from .external_eval import LESION, Predictor, cluster_bootstrap, model_inputs

METRICS = ("mass_in_mask", "pointing_hit")


def localisation(cam01: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """``mass_in_mask``, ``pointing_hit`` and ``mask_area`` of a [0, 1] map against a boolean mask of the same size."""
    m = np.clip(np.asarray(cam01, np.float64), 0, None)
    mk = np.asarray(mask, bool)
    if m.shape != mk.shape:
        raise ValueError(f"map {m.shape} and mask {mk.shape} differ in size")
    area = float(mk.mean())
    total = m.sum()
    if total <= 0:
        return {"mass_in_mask": math.nan, "pointing_hit": math.nan, "mask_area": area}
    peak = np.unravel_index(int(np.argmax(m)), m.shape)
    return {"mass_in_mask": float(m[mk].sum() / total), "pointing_hit": float(mk[peak]), "mask_area": area}


def load_mask(path: Path | str, shape: tuple[int, int]) -> np.ndarray:
    """A 0/255 mask file as bool, at ``shape`` (nearest neighbour if it differs)."""
    m = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if m is None:
        raise ConfigError(f"cannot read mask {path}")
    if m.shape != tuple(shape):
        m = cv2.resize(m, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    return m > 127


def localisation_sets(datasets_root: Path | str, split_file: Path | str | None,
                      which: Sequence[str] = ("breast_lesions_usg", "bus_uclm")) -> dict[str, list]:
    """Lesion images with a usable mask, per set (see the module docstring)."""
    from .data import BREAST_LESIONS_USG, read_breast_lesions_usg, read_bus_uclm, read_lesion_split_csv

    root = Path(datasets_root)
    sets: dict[str, list] = {}
    for d in which:
        if d == BREAST_LESIONS_USG:
            sets[d] = read_breast_lesions_usg(root / d, lesions_only=True)
            continue
        if split_file is None:
            raise ConfigError(f"the {d} test set needs --split-file")
        test = {s.path for s in read_lesion_split_csv(split_file, root, "test") if s.dataset == d}
        if d == "bus_uclm":
            rows = [s for s in read_bus_uclm(root / d) if s.path in test]
            rows = [s for s in rows if s.label in LESION and s.has_lesion_mask
                    and "approximate" not in s.info().get("mask_note", "")]
        else:
            rows = [s for s in read_lesion_split_csv(split_file, root, "test")
                    if s.dataset == d and s.label in LESION and s.mask is not None]
        if not rows:
            raise ConfigError(f"no {d} test lesion images with a mask")
        sets[d] = rows
    return sets


def _summary(values: np.ndarray, chance: np.ndarray, groups: Sequence[str], n_boot: int, seed: int
             ) -> dict[str, Any]:
    ok = np.isfinite(values)
    v, c = values[ok], chance[ok]
    g = [grp for grp, k in zip(groups, ok) if k]
    if v.size == 0:
        return {"mean": None, "ci95": None, "chance": None, "minus_chance": None, "minus_chance_ci95": None, "n": 0}
    return {"mean": float(v.mean()), "ci95": cluster_bootstrap(g, lambda ix: float(v[ix].mean()), n_boot, seed),
            "chance": float(c.mean()), "minus_chance": float((v - c).mean()),
            "minus_chance_ci95": cluster_bootstrap(g, lambda ix: float((v[ix] - c[ix]).mean()), n_boot, seed + 1),
            "n": int(v.size)}


def run(models: Sequence[tuple[str, str]], sets: dict[str, list], *, cam_class: str = "true", roi_mode: str = "none",
        n_boot: int = 2000, seed: int = 0, out_dir: str | Path = "cam_localisation", n_figure: int = 8
        ) -> dict[str, Any]:
    """Measure every model (``(name, ONNX file)``) on every set; write the JSON, Markdown, per-image CSV and one
    figure per set to ``out_dir`` and return the JSON's content."""
    if cam_class not in ("true", "predicted"):
        raise ConfigError(f"--cam-class must be true or predicted, not {cam_class!r}")
    predictors = _load_predictors(models)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"cam_class": cam_class, "roi": roi_mode, "n_boot": n_boot, "seed": seed,
                              "models": {n: _model_info(p) for n, p in predictors}, "sets": {}}
    rows: list[dict[str, Any]] = []
    rng = np.random.default_rng(seed)
    for dname, samples in sets.items():
        fig_idx = set(rng.permutation(len(samples))[:n_figure].tolist())
        measured = _measure_set(dname, samples, predictors, cam_class, roi_mode, fig_idx)
        rows += measured.rows
        result["sets"][dname] = res = _set_summary(dname, samples, measured, n_boot, seed)
        if measured.tiles:
            fig = out / f"cam_localisation_{dname}.jpg"  # JPEG: a figure to look at, a tenth of a PNG's size
            cv2.imwrite(str(fig), _grid(measured.tiles), [cv2.IMWRITE_JPEG_QUALITY, 85])
            res["figure"] = str(fig)
    result["per_image_csv"] = str(_write_rows(out / "cam_localisation_per_image.csv", rows))
    (out / "cam_localisation.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    (out / "cam_localisation.md").write_text(markdown_table(result), encoding="utf-8")
    return result


def _load_predictors(models: Sequence[tuple[str, str]]) -> list[tuple[str, Predictor]]:
    predictors = []
    for name, path in models:
        pr = Predictor(path)
        if not pr.has_cam:
            raise ConfigError(f"{path}: needs an ONNX model file with the fused 'cam' output")
        predictors.append((name, pr))
    return predictors


def _model_info(pr: Predictor) -> dict[str, Any]:
    return {"path": str(pr.path), "arch": pr.spec.arch, "input_size": list(pr.spec.input_size),
            "cam_grid": list(pr.engine.cam_size) if pr.engine.cam_size else None}


@dataclass(frozen=True)
class ModelOnImage:
    """One model's map on one image (in the region the model saw, ``roi`` = x, y, w, h) and its measures."""

    cam_class: str
    top_class: str
    roi: tuple[int, int, int, int]
    map: np.ndarray
    loc: dict[str, float]

    def row_items(self, name: str) -> dict[str, Any]:
        """The per-image CSV's columns of this model (``mask_area`` is the image's, not the model's)."""
        return {f"{name}_cam_class": self.cam_class, f"{name}_p_top": self.top_class,
                **{f"{name}_{k}": (round(v, 6) if math.isfinite(v) else "") for k, v in self.loc.items()
                   if k != "mask_area"}}

    def full_map(self, shape: tuple[int, int]) -> np.ndarray:
        """The map placed in its region of an all-zero map of the whole image."""
        rx, ry, rw, rh = self.roi
        full = np.zeros(shape, np.float32)
        full[ry:ry + rh, rx:rx + rw] = self.map
        return full


def model_on_image(pr: Predictor, gray: np.ndarray, mask_full: np.ndarray, label: str, cam_class: str,
                   roi_mode: str) -> ModelOnImage:
    """Run one model on one image and measure its map (for the true ``label`` or the top class) against the mask."""
    from sonolens.pipeline.cam import heatmap

    x, roi = model_inputs(gray, pr.spec, roi_mode)
    probs, cam = pr(x, want_cam=True)
    assert cam is not None  # has_cam checked in _load_predictors
    c = pr.class_names.index(label) if cam_class == "true" else int(np.argmax(probs))
    rx, ry, rw, rh = roi
    m = heatmap(cam[c], (rh, rw))
    loc = localisation(m, mask_full[ry:ry + rh, rx:rx + rw])
    return ModelOnImage(pr.class_names[c], pr.class_names[int(np.argmax(probs))], roi, m, loc)


@dataclass(frozen=True)
class SetMeasures:
    """What ``_measure_set`` collects over one set: per model, each measure per image (and the count of empty
    maps); the per-image CSV rows; the figure's tiles."""

    per_model: dict[str, dict[str, list[float]]]
    empty: dict[str, int]
    rows: list[dict[str, Any]]
    tiles: list[np.ndarray]


def _measure_set(dname: str, samples: Sequence[Any], predictors: list[tuple[str, Predictor]], cam_class: str,
                 roi_mode: str, fig_idx: set[int]) -> SetMeasures:
    from .data import load_gray

    names = [n for n, _ in predictors]
    per_model: dict[str, dict[str, list[float]]] = {n: {"mass_in_mask": [], "pointing_hit": [], "mask_area": []}
                                                    for n in names}
    empty = {n: 0 for n in names}
    rows: list[dict[str, Any]] = []
    tiles: list[np.ndarray] = []
    for i, s in enumerate(samples):
        gray = load_gray(s.path)
        mask_full = load_mask(s.mask, gray.shape[:2])
        row: dict[str, Any] = {"dataset": dname, "file": str(s.path), "label": s.label, "group": s.group}
        maps = []
        for name, pr in predictors:
            r = model_on_image(pr, gray, mask_full, s.label, cam_class, roi_mode)
            if not math.isfinite(r.loc["mass_in_mask"]):
                empty[name] += 1
            for k, values in per_model[name].items():
                values.append(r.loc[k])
            row.update(r.row_items(name))
            row["mask_area"] = round(r.loc["mask_area"], 6)
            maps.append(r.full_map(gray.shape[:2]))
        rows.append(row)
        if i in fig_idx:
            tiles.append(_tile(gray, mask_full, maps, names, s))
    return SetMeasures(per_model, empty, rows, tiles)


def _set_summary(dname: str, samples: Sequence[Any], measured: SetMeasures, n_boot: int, seed: int
                 ) -> dict[str, Any]:
    """One set's entry of the JSON: sizes, the mean mask area, and per model the measures' summaries."""
    groups = [s.group for s in samples]
    names = list(measured.per_model)
    res: dict[str, Any] = {"dataset": dname, "n_images": len(samples), "n_patients": len(set(groups)),
                           "mask_area_mean": float(np.mean(measured.per_model[names[0]]["mask_area"])),
                           "models": {}}
    for name in names:
        vals = measured.per_model[name]
        chance = np.array(vals["mask_area"])
        res["models"][name] = {"empty_maps": measured.empty[name],
                               **{k: _summary(np.array(vals[k], float), chance, groups, n_boot, seed + 10 * j)
                                  for j, k in enumerate(METRICS)}}
    return res


def _write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    """The per-image CSV: every column any row has, in the order they first appear."""
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=keys, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return path


def _tile(gray: np.ndarray, mask: np.ndarray, maps: Sequence[np.ndarray], names: Sequence[str], s: Any,
          height: int = 150) -> np.ndarray:
    from sonolens.pipeline.overlay import blend_heatmap

    h, w = gray.shape[:2]
    scale = height / h
    size = (max(1, int(round(w * scale))), height)
    base = cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)
    cs, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    panels = []
    img = base.copy()
    cv2.drawContours(img, cs, -1, (0, 255, 0), 2)
    panels.append(img)
    for m in maps:
        ov = blend_heatmap(gray, m, (0, 0, w, h), alpha=0.45, colormap="jet")
        cv2.drawContours(ov, cs, -1, (255, 255, 255), 1)
        peak = np.unravel_index(int(np.argmax(m)), m.shape)
        cv2.drawMarker(ov, (int(peak[1]), int(peak[0])), (255, 255, 255), cv2.MARKER_TILTED_CROSS, 14, 2)
        panels.append(ov)
    panels = [cv2.resize(p, size, interpolation=cv2.INTER_AREA) for p in panels]
    row = np.hstack(panels)
    label = f"{s.label} {Path(s.path).name}  | " + " | ".join(names)
    cv2.putText(row, label[:80], (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 0), 1, cv2.LINE_AA)
    return cv2.cvtColor(row, cv2.COLOR_RGB2BGR)


def _grid(tiles: Sequence[np.ndarray]) -> np.ndarray:
    width = max(t.shape[1] for t in tiles)
    padded = [np.pad(t, ((0, 4), (0, width - t.shape[1]), (0, 0))) for t in tiles]
    return np.vstack(padded)


def _fmt(stat: dict[str, Any], pct: bool = True) -> str:
    v = stat.get("mean")
    if v is None:
        return "–"
    ci = stat.get("ci95")
    f = 100.0 if pct else 1.0
    return f"{f * v:.1f}" + (f" [{f * ci[0]:.1f}, {f * ci[1]:.1f}]" if ci else "")


def markdown_table(result: dict[str, Any]) -> str:
    lines = [f"Grad-CAM of the {result['cam_class']} class vs the lesion mask (ROI: {result['roi']}); means over "
             f"images, 95 % CIs by patient bootstrap. Chance = the mask's area share (a uniform map's mass, a random "
             f"point's hit rate).", "",
             "| model | dataset | images (patients) | CAM mass in lesion % | pointing-game hits % | "
             "chance (mask area) % | mass − chance, points | hits − chance, points | empty maps |",
             "|---|---|---|---|---|---|---|---|---|"]
    for dname, res in result["sets"].items():
        for name, m in res["models"].items():
            mass, hit = m["mass_in_mask"], m["pointing_hit"]

            def diff(st: dict[str, Any]) -> str:
                if st.get("minus_chance") is None:
                    return "–"
                ci = st.get("minus_chance_ci95")
                return f"{100 * st['minus_chance']:+.1f}" + (f" [{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]" if ci else "")

            lines.append(f"| {name} | {dname} | {res['n_images']} ({res['n_patients']}) | {_fmt(mass)} | {_fmt(hit)} | "
                         f"{100 * res['mask_area_mean']:.1f} | {diff(mass)} | {diff(hit)} | {m['empty_maps']} |")
    for name, m in result["models"].items():
        grid = "×".join(map(str, m["cam_grid"])) if m["cam_grid"] else "?"
        lines.append(f"\n- {name}: `{Path(m['path']).name}`, {m['arch']}, input "
                     f"{m['input_size'][0]}×{m['input_size'][1]}, CAM grid {grid}")
    return "\n".join(lines) + "\n"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sonolens cam-localise",
        description="How well each model's Grad-CAM map points at the lesion: CAM mass inside the radiologist's "
                    "mask and the pointing game, with patient-bootstrap CIs and the chance level, on "
                    "BrEaST-Lesions-USG and the BUS-UCLM test patients. Research use only.")
    p.add_argument("--model", action="append", required=True, metavar="[NAME=]MODEL.onnx",
                   help="an ONNX model file with the 'cam' output; repeatable")
    p.add_argument("--datasets-root", default="../shared/datasets")
    p.add_argument("--split-file", default="training/split_csv/busi_uclm.csv")
    p.add_argument("--sets", default="breast_lesions_usg,bus_uclm")
    p.add_argument("--cam-class", choices=("true", "predicted"), default="true")
    p.add_argument("--roi", choices=("none", "auto"), default="none")
    p.add_argument("--n-boot", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-figure", type=int, default=8, help="images per set in the figure")
    p.add_argument("--limit", type=int, default=None, help="only the first N images of each set (quick looks)")
    p.add_argument("--out-dir", default="cam_localisation")
    return p


def cli_main(argv: list[str]) -> int:
    from .config import resolve_path
    from .external_eval import named_path

    args = _parser().parse_args(argv)
    models = [(n, str(resolve_path(p))) for n, p in (named_path(m) for m in args.model)]
    if len({n for n, _ in models}) != len(models):
        raise ConfigError("two --model entries have the same name; use NAME=PATH")
    sets = localisation_sets(args.datasets_root, resolve_path(args.split_file) if args.split_file else None,
                             [s.strip() for s in args.sets.split(",") if s.strip()])
    if args.limit:
        sets = {k: v[: args.limit] for k, v in sets.items()}
    result = run(models, sets, cam_class=args.cam_class, roi_mode=args.roi, n_boot=args.n_boot, seed=args.seed,
                 out_dir=args.out_dir, n_figure=args.n_figure)
    print(markdown_table(result), end="")
    print(f"outputs: {args.out_dir}/cam_localisation.{{json,md}}, per-image CSV and figures", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(sys.argv[1:]))
