"""``sonolens external-eval``: a breast model on other hospitals' scanners — benign vs malignant on lesion images.

Sets (each a column ``dataset`` in every table, JSON entry and per-image row):

* ``breast_lesions_usg`` — the EXTERNAL test set (Poland, several scanners): its 252 lesion images
  (154 benign, 98 malignant; one image per patient). The 4 ``normal`` cases (BI-RADS 1, no tumour mask) are left
  out: benign-vs-malignant needs a lesion. Never used for training, selection, thresholds or calibration.
* ``bus_uclm`` test — Spain, Siemens; the test patients of ``--split-file`` (``busi_uclm.csv``): lesion images
  for the benign-vs-malignant numbers, all images (normal too) for the 3-class accuracy.
* ``busi`` test — the canonical in-domain test set (Egypt), for comparison on the same metric.

Score: ``r = P(malignant) / (P(benign) + P(malignant))`` — the model's malignancy odds among lesion classes,
so a lesion the model calls "normal" is still ranked. (Monotone in the logit difference, so a temperature does
not change it.) Metrics:

* ROC-AUC of ``r`` (malignant positive), Mann-Whitney with ties ½;
* sensitivity at 90 % specificity, read off the ROC of the same set: threshold = the smallest score that keeps
  ≥ 90 % of the benign images at or below it. A property of the curve — NOT a threshold anyone could have set
  in advance;
* sensitivity and specificity at the **validation threshold**: the same rule applied to the lesion images of
  the split's ``val`` rows (BUSI + BUS-UCLM val, never test or external), then carried to each set unchanged — what
  a deployed operating point would give;
* 3-class argmax: accuracy over the set's images (on a lesion-only set: the share of lesions given their own
  class) and the share of lesions called ``normal``;
* with a model file that carries an out-of-domain gate (``ood_score`` output and threshold): the share of images
  the runtime would mark ``out_of_domain`` and show no prediction for (one still = one frame, no hysteresis).

Confidence intervals: percentile bootstrap (``--n-boot``, seeded) **over patients** (BUS-UCLM: ``split_group``;
BrEaST: one image per patient, so over images; BUSI: near-duplicate groups, the nearest thing to patients it has):
frames of one patient are not independent, and an image-level bootstrap would make BUS-UCLM's 7 test patients
look like 137 independent cases.

``--from-json NAME=EVAL.json`` adds the same metrics on the BUSI test set from a committed ``sonolens eval --json``
file (its stored probabilities), for models whose file is not in the repository (the teacher, the baseline).
Images are preprocessed as the runtime does (``pipeline.preprocess.preprocess_image``): the full image
(``--roi none``, as ``sonolens eval``), or the region the runtime's ROI detector finds in it (``--roi auto``).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sonolens.pipeline.errors import ConfigError, ModelError

LESION = ("benign", "malignant")
# what a model entry of the JSON repeats from the file's provenance (``sonolens seed-summary`` reads val_accuracy)
PROVENANCE_KEYS = ("run", "mode", "seed", "epoch", "val_accuracy", "val_macro_f1", "dataset", "split")
TARGET_SPEC = 0.90


# --------------------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------------------
def malignancy_score(probs: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    """``P(malignant) / (P(benign) + P(malignant))`` for probability rows [N, C]."""
    names = [c.lower() for c in class_names]
    if "benign" not in names or "malignant" not in names:
        raise ConfigError(f"the model needs benign and malignant classes (has {', '.join(class_names)})")
    p = np.asarray(probs, np.float64)
    b, m = p[:, names.index("benign")], p[:, names.index("malignant")]
    return m / np.maximum(b + m, 1e-300)


def auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """ROC-AUC (Mann-Whitney U / (n_pos n_neg), ties count ½); NaN when a class is missing."""
    s, y = np.asarray(scores, np.float64), np.asarray(positive, bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    # average ranks for ties
    uniq, start, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = start + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def spec_threshold(neg_scores: np.ndarray, target_spec: float = TARGET_SPEC) -> float:
    """The smallest threshold ``t`` among the negatives' scores with ``mean(neg <= t) >= target_spec``."""
    s = np.sort(np.asarray(neg_scores, np.float64))
    if s.size == 0:
        return math.nan
    k = max(0, int(math.ceil(target_spec * s.size - 1e-9)) - 1)
    return float(s[k])


def sens_spec_at(scores: np.ndarray, positive: np.ndarray, t: float) -> tuple[float, float]:
    """(sensitivity, specificity) calling ``score > t`` malignant."""
    s, y = np.asarray(scores, np.float64), np.asarray(positive, bool)
    sens = float((s[y] > t).mean()) if y.any() else math.nan
    spec = float((s[~y] <= t).mean()) if (~y).any() else math.nan
    return sens, spec


def sens_at_spec(scores: np.ndarray, positive: np.ndarray, target_spec: float = TARGET_SPEC) -> float:
    """Sensitivity at the ROC point with specificity >= ``target_spec`` (threshold from this set's negatives)."""
    s, y = np.asarray(scores, np.float64), np.asarray(positive, bool)
    if not y.any() or y.all():
        return math.nan
    return sens_spec_at(s, y, spec_threshold(s[~y], target_spec))[0]


def cluster_bootstrap(groups: Sequence[str], stat: Callable[[np.ndarray], float], n_boot: int = 2000,
                      seed: int = 0) -> list[float] | None:
    """Percentile 95 % CI of ``stat(indices)`` over resamples of whole groups (with replacement); None if < 2 groups
    or every resample is NaN."""
    keys = sorted(set(groups))
    if len(keys) < 2 or n_boot <= 0:
        return None
    members: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    blocks = [np.array(members[k]) for k in keys]
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(int(n_boot)):
        pick = rng.integers(0, len(blocks), len(blocks))
        vals.append(stat(np.concatenate([blocks[k] for k in pick])))
    v = np.array(vals, float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return None
    return [float(np.quantile(v, 0.025)), float(np.quantile(v, 0.975))]


def lesion_metrics(probs: np.ndarray, class_names: Sequence[str], labels: Sequence[str], groups: Sequence[str],
                   val_threshold: float | None = None, n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Benign-vs-malignant metrics of the lesion rows (labels benign/malignant) with patient-bootstrap CIs,
    plus 3-class numbers over all rows."""
    labels = [lab.lower() for lab in labels]
    names = [c.lower() for c in class_names]
    probs = np.asarray(probs, np.float64)
    les = np.array([lab in LESION for lab in labels])
    r = malignancy_score(probs[les], class_names)
    y = np.array([lab == "malignant" for lab, keep in zip(labels, les) if keep])
    g = [grp for grp, keep in zip(groups, les) if keep]
    out: dict[str, Any] = {
        "n_images": int(len(labels)), "n_lesions": int(les.sum()), "n_benign": int((~y).sum()),
        "n_malignant": int(y.sum()), "n_patients": len(set(g)), "bootstrap": "patients (groups)",
        "n_boot": int(n_boot), "boot_seed": int(seed),
        "auc": auc(r, y),
        "auc_ci95": cluster_bootstrap(g, lambda ix: auc(r[ix], y[ix]), n_boot, seed),
        "target_specificity": TARGET_SPEC,
        "sens_at_90_spec": sens_at_spec(r, y),
        "sens_at_90_spec_ci95": cluster_bootstrap(g, lambda ix: sens_at_spec(r[ix], y[ix]), n_boot, seed + 1),
    }
    if val_threshold is not None and math.isfinite(val_threshold):
        sens, spec = sens_spec_at(r, y, val_threshold)
        out.update({"val_threshold": float(val_threshold), "sens_at_val_threshold": sens,
                    "spec_at_val_threshold": spec,
                    "sens_at_val_threshold_ci95": cluster_bootstrap(
                        g, lambda ix: sens_spec_at(r[ix], y[ix], val_threshold)[0], n_boot, seed + 2),
                    "spec_at_val_threshold_ci95": cluster_bootstrap(
                        g, lambda ix: sens_spec_at(r[ix], y[ix], val_threshold)[1], n_boot, seed + 3)})
    pred = probs.argmax(axis=1)
    pred_names = np.array([names[k] for k in pred])
    lab = np.array(labels)
    out["lesions_called_normal"] = float((pred_names[les] == "normal").mean()) if les.any() else math.nan
    out["argmax_confusion"] = {t: {p: int(((lab == t) & (pred_names == p)).sum()) for p in names}
                               for t in sorted(set(labels))}
    if set(labels) <= set(names):
        correct = pred_names == lab
        out["accuracy_3class"] = float(correct.mean())
        out["accuracy_3class_ci95"] = cluster_bootstrap(list(groups), lambda ix: float(correct[ix].mean()),
                                                        n_boot, seed + 4)
    return out


# --------------------------------------------------------------------------------------------------------
# Running a model
# --------------------------------------------------------------------------------------------------------
def model_inputs(gray: np.ndarray, spec, roi_mode: str = "none") -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The runtime's input tensor for one grey image, and the ROI used (x, y, w, h; the full image for ``none``)."""
    from sonolens.pipeline.preprocess import preprocess_image
    from sonolens.pipeline.roi import detect_roi

    h, w = gray.shape[:2]
    if roi_mode == "none":
        return preprocess_image(gray, spec), (0, 0, w, h)
    if roi_mode != "auto":
        raise ConfigError(f"--roi must be none or auto, not {roi_mode!r}")
    x, y, rw, rh = (int(v) for v in detect_roi([gray]))
    return preprocess_image(gray, spec, (x, y, rw, rh)), (x, y, rw, rh)


class Predictor:
    """Class probabilities (and raw CAM when the ONNX file has it) of an ONNX model or a training checkpoint."""

    def __init__(self, model_path: str | Path):
        self.path = Path(model_path)
        if not self.path.is_file():
            raise ModelError(f"model {str(self.path)!r} does not exist")
        self.engine: Any = None
        self.torch_model: Any = None
        if self.path.suffix.lower() == ".onnx":
            from sonolens.pipeline.engines import OnnxEngine

            self.engine = OnnxEngine(str(self.path), threads=1)
            self.spec = self.engine.meta
        else:
            from sonolens.models.checkpoint import load_checkpoint

            self.torch_model = load_checkpoint(self.path).eval()
            self.spec = self.torch_model.sonolens_spec
        self.class_names = tuple(c.lower() for c in self.spec.class_names)

    @property
    def has_cam(self) -> bool:
        return self.engine is not None and bool(self.engine.has_cam)

    def __call__(self, x: np.ndarray, want_cam: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        if self.engine is not None:
            logits, cam = self.engine.run(x, want_cam=want_cam and self.has_cam)
        else:
            import torch

            with torch.no_grad():
                logits = self.torch_model(torch.from_numpy(x)).double().numpy()[0]
            cam = None
        z = np.asarray(logits, np.float64).reshape(-1)
        e = np.exp(z - z.max())
        return e / e.sum(), cam


    @property
    def ood_threshold(self) -> float | None:
        """The out-of-domain gate's threshold when the ONNX file carries one (``ood_score`` output)."""
        if self.engine is None or not getattr(self.engine, "has_ood", False) or not self.spec.ood:
            return None
        return float(self.spec.ood["threshold"])

    def ood_score(self, x: np.ndarray) -> float | None:
        if self.ood_threshold is None:
            return None
        return float(self.engine.ood_scores(x)[0])


def predict_samples(predictor: Predictor, samples: Sequence[Any], roi_mode: str = "none",
                    ood: list[float] | None = None) -> np.ndarray:
    """Probabilities [N, C]; with ``ood`` (a list), the gate's score of each image is appended to it (NaN without
    a gate)."""
    from .data import load_gray

    out = []
    for s in samples:
        x = model_inputs(load_gray(s.path), predictor.spec, roi_mode)[0]
        out.append(predictor(x)[0])
        if ood is not None:
            score = predictor.ood_score(x)
            ood.append(math.nan if score is None else score)
    return np.stack(out)


# --------------------------------------------------------------------------------------------------------
# The evaluation sets
# --------------------------------------------------------------------------------------------------------
def evaluation_sets(datasets_root: Path | str, split_file: Path | str | None,
                    which: Sequence[str] = ("breast_lesions_usg", "bus_uclm", "busi")) -> dict[str, list]:
    """``{set name: [LesionSample]}``: the external lesion images, and the test rows of the split file per dataset."""
    from .data import BREAST_LESIONS_USG, read_breast_lesions_usg, read_lesion_split_csv

    root = Path(datasets_root)
    sets: dict[str, list] = {}
    if BREAST_LESIONS_USG in which:
        sets[BREAST_LESIONS_USG] = read_breast_lesions_usg(root / BREAST_LESIONS_USG, lesions_only=True)
    others = [d for d in which if d != BREAST_LESIONS_USG]
    if others:
        if split_file is None:
            raise ConfigError(f"{', '.join(others)} test sets need --split-file "
                              f"(e.g. training/split_csv/busi_uclm.csv)")
        test = read_lesion_split_csv(split_file, root, "test")
        for d in others:
            rows = [s for s in test if s.dataset == d]
            if not rows:
                raise ConfigError(f"{split_file} has no test rows of dataset {d!r}")
            sets[d] = rows
    return sets


def val_lesions(datasets_root: Path | str, split_file: Path | str) -> list:
    from .data import read_lesion_split_csv

    return [s for s in read_lesion_split_csv(split_file, datasets_root, "val") if s.label in LESION]


def evaluate(model_path: str | Path, datasets_root: Path | str, split_file: Path | str | None, *,
             which: Sequence[str] = ("breast_lesions_usg", "bus_uclm", "busi"), roi_mode: str = "none",
             n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    predictor = Predictor(model_path)
    sets = evaluation_sets(datasets_root, split_file, which)
    threshold = None
    result: dict[str, Any] = {"model": str(model_path), "arch": predictor.spec.arch,
                              "class_names": list(predictor.class_names), "roi": roi_mode,
                              "score": "P(malignant) / (P(benign) + P(malignant))",
                              "split_file": str(split_file) if split_file else None, "sets": {}, "per_image": []}
    prov = predictor.spec.provenance or {}
    result["provenance"] = {k: prov[k] for k in PROVENANCE_KEYS if k in prov}  # which run, how it was selected
    if split_file is not None:
        val = val_lesions(datasets_root, split_file)
        if val:
            pv = predict_samples(predictor, val, roi_mode)
            rv = malignancy_score(pv, predictor.class_names)
            yv = np.array([s.label == "malignant" for s in val])
            threshold = spec_threshold(rv[~yv])
            result["val_threshold"] = {"value": threshold, "n_benign": int((~yv).sum()),
                                       "n_malignant": int(yv.sum()),
                                       "datasets": sorted({s.dataset for s in val}),
                                       "rule": "smallest score with >= 90 % of val benign lesions at or below it",
                                       "val_sensitivity": sens_spec_at(rv, yv, threshold)[0]}
    gate = predictor.ood_threshold
    result["ood_threshold"] = gate
    for name, samples in sets.items():
        ood: list[float] = []
        probs = predict_samples(predictor, samples, roi_mode, ood)
        m = lesion_metrics(probs, predictor.class_names, [s.label for s in samples], [s.group for s in samples],
                           threshold, n_boot, seed)
        m["dataset"] = name
        if gate is not None:  # what the runtime's out-of-domain gate would do with each still: hide its prediction
            flagged = np.array(ood) > gate

            def share(ix: np.ndarray, f: np.ndarray = flagged) -> float:
                return float(f[ix].mean())

            m["ood_flagged"] = float(flagged.mean())
            m["ood_flagged_ci95"] = cluster_bootstrap([s.group for s in samples], share, n_boot, seed + 5)
        result["sets"][name] = m
        r = malignancy_score(probs, predictor.class_names)
        for s, p, score, o in zip(samples, probs, r, ood):
            result["per_image"].append({"dataset": name, "file": str(s.path), "label": s.label, "group": s.group,
                                        **{f"p_{c}": round(float(v), 6) for c, v in zip(predictor.class_names, p)},
                                        "malignancy_score": round(float(score), 6),
                                        "ood_score": "" if math.isnan(o) else round(o, 4)})
    return result


def from_eval_json(path: str | Path, split_csv: str | Path, n_boot: int = 2000, seed: int = 0,
                   val_threshold: float | None = None) -> dict[str, Any]:
    """The lesion metrics on the BUSI test set from a committed ``sonolens eval --json`` file's probabilities, with
    groups from BUSI's split CSV (``file`` relative to the BUSI root)."""
    d = json.loads(Path(path).read_text(encoding="utf-8"))
    if "probs" not in d or "files" not in d:
        raise ConfigError(f"{path} has no per-image probabilities")
    with Path(split_csv).open(newline="", encoding="utf-8") as fh:
        groups = {r["file"]: r["group"] for r in csv.DictReader(fh)}
    names = [c.lower() for c in d["class_names"]]
    labels = [names[k] for k in d["y_true"]]
    g = []
    for f in d["files"]:
        parts = Path(f).parts
        rel = "/".join(parts[-2:])
        if rel not in groups:
            raise ConfigError(f"{path}: {f} is not in {split_csv}")
        g.append(groups[rel])
    m = lesion_metrics(np.asarray(d["probs"]), names, labels, g, val_threshold, n_boot, seed)
    m.update({"dataset": "busi", "source": str(path), "model": d.get("model")})
    return m


# --------------------------------------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------------------------------------
def _pct(v: float | None, ci: list[float] | None = None) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{100 * v:.1f}" + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")


def _num(v: float | None, ci: list[float] | None = None) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def markdown_table(rows: Sequence[tuple[str, dict[str, Any]]]) -> str:
    """One row per (model, set): the benign-vs-malignant metrics with their 95 % CIs."""
    out = ["| model | dataset | lesions (b/m) | patients | AUC [95% CI] | sens. @ 90 % spec. (ROC) % | "
           "sens. / spec. @ val threshold % | lesions called normal % | 3-class acc. % | hidden by the OOD gate % |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for model, m in rows:
        at_val = "–"
        if "sens_at_val_threshold" in m:
            at_val = (f"{_pct(m['sens_at_val_threshold'], m.get('sens_at_val_threshold_ci95'))} / "
                      f"{_pct(m['spec_at_val_threshold'], m.get('spec_at_val_threshold_ci95'))}")
        out.append(f"| {model} | {m['dataset']} | {m['n_lesions']} ({m['n_benign']}/{m['n_malignant']}) | "
                   f"{m['n_patients']} | {_num(m['auc'], m.get('auc_ci95'))} | "
                   f"{_pct(m['sens_at_90_spec'], m.get('sens_at_90_spec_ci95'))} | {at_val} | "
                   f"{_pct(m['lesions_called_normal'])} | "
                   f"{_pct(m.get('accuracy_3class'), m.get('accuracy_3class_ci95'))} | "
                   f"{_pct(m.get('ood_flagged'), m.get('ood_flagged_ci95'))} |")
    return "\n".join(out) + "\n"


def write_per_image_csv(path: Path | str, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    keys = list(rows[0])
    with Path(path).open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=keys, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sonolens external-eval",
        description="Benign-vs-malignant evaluation of a breast model on other hospitals' scanners "
                    "(BrEaST-Lesions-USG lesions, BUS-UCLM test) and the BUSI test: AUC of P(m)/(P(b)+P(m)), "
                    "sensitivity at 90%% specificity, the validation threshold's operating point, patient-bootstrap "
                    "95%% CIs. Research use only.")
    p.add_argument("--model", action="append", default=[], metavar="[NAME=]PATH",
                   help="ONNX file or training checkpoint; repeatable")
    p.add_argument("--from-json", action="append", default=[], metavar="NAME=EVAL.json",
                   help="also score a committed 'sonolens eval --json' file of the BUSI test set "
                        "(its stored probabilities)")
    p.add_argument("--datasets-root", default="../shared/datasets", help="folder holding the datasets")
    p.add_argument("--split-file", default="training/split_csv/busi_uclm.csv",
                   help="multi-dataset split CSV: its test rows are the BUS-UCLM / BUSI test sets, its val rows set "
                        "the validation threshold")
    p.add_argument("--busi-split", default="training/split_csv/busi.csv",
                   help="BUSI's split CSV (groups for --from-json)")
    p.add_argument("--sets", default="breast_lesions_usg,bus_uclm,busi", help="which sets, comma-separated")
    p.add_argument("--roi", choices=("none", "auto"), default="none",
                   help="none: the full image (as 'sonolens eval'); auto: the runtime's detected image region")
    p.add_argument("--n-boot", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="write everything (metrics, per-image scores) as JSON")
    p.add_argument("--md", default=None, help="write the table as Markdown")
    p.add_argument("--csv", default=None, help="write one row per image (dataset, file, label, probabilities)")
    return p


def named_path(item: str) -> tuple[str, str]:
    """``NAME=PATH`` → (NAME, PATH); a bare ``PATH`` is named by its file stem (``--model`` of external-eval,
    cam-localise)."""
    name, sep, path = item.partition("=")
    if sep and name and path:
        return name, path
    return Path(item).stem, item


def cli_main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if not args.model and not args.from_json:
        raise ConfigError("give at least one --model (or --from-json)")
    from .config import resolve_path

    split = resolve_path(args.split_file) if args.split_file else None
    which = [s.strip() for s in args.sets.split(",") if s.strip()]
    out: dict[str, Any] = {"roi": args.roi, "split_file": args.split_file, "sets": which, "models": {},
                           "from_json": {}}
    rows: list[tuple[str, dict[str, Any]]] = []
    per_image: list[dict[str, Any]] = []
    threshold = None
    for item in args.model:
        name, path = named_path(item)
        res = evaluate(resolve_path(path), args.datasets_root, split, which=which, roi_mode=args.roi,
                       n_boot=args.n_boot, seed=args.seed)
        res["model"] = path
        out["models"][name] = res
        threshold = threshold if threshold is not None else (res.get("val_threshold") or {}).get("value")
        rows += [(name, m) for m in res["sets"].values()]
        per_image += [{"model": name, **r} for r in res["per_image"]]
    for item in args.from_json:
        name, path = named_path(item)
        m = from_eval_json(resolve_path(path), resolve_path(args.busi_split), args.n_boot, args.seed)
        out["from_json"][name] = m
        rows.append((f"{name} (stored probabilities)", m))
    table = markdown_table(rows)
    print(table, end="")
    if args.csv:  # per-image rows go to the CSV, not (again) into the JSON
        for res in out["models"].values():
            res.pop("per_image", None)
            res["per_image_csv"] = args.csv
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1), encoding="utf-8")
        print(f"metrics: {args.json}", file=sys.stderr)
    if args.md:
        Path(args.md).parent.mkdir(parents=True, exist_ok=True)
        Path(args.md).write_text(table, encoding="utf-8")
    if args.csv:
        write_per_image_csv(args.csv, per_image)
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(sys.argv[1:]))
