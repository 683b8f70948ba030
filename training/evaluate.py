"""``sonolens eval``: a model (ONNX file or training checkpoint) on a labelled image folder or split.

Both kinds of model see the images exactly as the runtime would feed them: the full image through the runtime's
own ``pipeline.preprocess.preprocess_image`` (grayscale → ``cv2.resize(INTER_AREA)`` to the model's input size →
normalisation table with the model's mean/std). An ONNX file runs through the runtime's ``OnnxEngine``;
a checkpoint through PyTorch. The numbers therefore describe what ``sonolens run`` would output, and the two
agree (tests check it).

Metrics (``evaluate_predictions``): accuracy, per-class precision/recall/F1/support, macro-F1, the confusion
matrix, ROC-AUC of malignant-vs-rest from P(malignant), and percentile bootstrap 95% confidence intervals
(accuracy, macro-F1, AUC; fixed seed, 1000+ resamples by default). A dataset may hold only some of the
model's classes (e.g. benign and malignant only): per-class numbers and macro-F1 cover the classes present,
and the confusion matrix also has a column for every absent class the model predicted.

Probabilities are the runtime's: ``softmax(logits / spec.temperature)`` (``ModelSpec.temperature``, 1.0 for an
uncalibrated model). ``evaluate_model`` adds their expected calibration error (15 bins, ``training.calibrate``;
with a bootstrap CI, and the uncalibrated ECE beside it) and, for a file with an ``ood_score`` output and a gate
(``ModelSpec.ood``), how many images the gate would flag as out of domain (Wilson 95 % CI) and the accuracy on
the images it lets through. On an external set these numbers are for reporting only: nothing is fitted on them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sonolens.pipeline.errors import ConfigError, ModelError
from sonolens.pipeline.modelfile import ModelSpec

POSITIVE = "malignant"


# --------------------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------------------
def _confusions(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int, weights: np.ndarray | None = None
                ) -> np.ndarray:
    """[C, C] (rows true, cols predicted), or [B, C, C] for bootstrap count weights [B, N]."""
    flat = y_true * n_classes + y_pred
    if weights is None:
        return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    b = weights.shape[0]
    idx = (np.arange(b)[:, None] * n_classes * n_classes + flat[None, :]).ravel()
    cm = np.bincount(idx, weights=weights.ravel(), minlength=b * n_classes * n_classes)
    return cm.reshape(b, n_classes, n_classes)


def _prf(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class precision, recall, F1 from confusion matrices [..., C, C] (0 where undefined)."""
    tp = np.diagonal(cm, axis1=-2, axis2=-1).astype(float)
    pred = cm.sum(axis=-2).astype(float)
    true = cm.sum(axis=-1).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(pred > 0, tp / np.maximum(pred, 1e-300), 0.0)
        recall = np.where(true > 0, tp / np.maximum(true, 1e-300), 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-300), 0.0)
    return precision, recall, f1


def auc_weighted(scores: np.ndarray, positive: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC-AUC (Mann-Whitney, ties count ½) for each row of count weights [B, N]; NaN where one class is absent.

    With multiplicity weights the rank-sum formula becomes: AUC = Σ_pos w_i (F_neg(<s_i) + ½ F_neg(=s_i)) /
    (W_pos W_neg), computed from the scores sorted once.
    """
    order = np.argsort(scores, kind="mergesort")
    s, pos, w = scores[order], positive[order], weights[:, order]
    w_neg = w * (~pos)
    # For each position: negative weight strictly below, and equal, using unique-score blocks.
    uniq, start = np.unique(s, return_index=True)
    block = np.searchsorted(uniq, s)
    neg_block = np.zeros((w.shape[0], len(uniq)))
    np.add.at(neg_block.T, block, w_neg.T)  # [B, U]
    below = np.cumsum(neg_block, axis=1) - neg_block
    contrib = (below[:, block] + 0.5 * neg_block[:, block]) * (w * pos)
    w_pos_total = (w * pos).sum(axis=1)
    w_neg_total = w_neg.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = contrib.sum(axis=1) / (w_pos_total * w_neg_total)
    auc[(w_pos_total == 0) | (w_neg_total == 0)] = np.nan
    return auc


def _ci(values: np.ndarray, level: float = 0.95) -> list[float] | None:
    v = values[np.isfinite(values)]
    if v.size == 0:
        return None
    a = (1 - level) / 2
    return [float(np.quantile(v, a)), float(np.quantile(v, 1 - a))]


def evaluate_predictions(y_true: Sequence[int], probs: np.ndarray, class_names: Sequence[str], *,
                         n_boot: int = 1000, seed: int = 0, positive: str = POSITIVE) -> dict[str, Any]:
    """Metrics of predicted class probabilities ``probs`` [N, C] against label indices ``y_true`` (into
    ``class_names``, the model's classes). Classes absent from ``y_true`` are left out of per-class numbers
    and macro-F1. ``n_boot=0`` skips the bootstrap CIs (used per epoch in training)."""
    y = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)
    names = tuple(class_names)
    c = len(names)
    if p.ndim != 2 or p.shape != (len(y), c):
        raise ValueError(f"probs must be [N={len(y)}, C={c}], got {p.shape}")
    if len(y) == 0:
        raise ValueError("no samples to evaluate")
    if y.min() < 0 or y.max() >= c:
        raise ValueError("y_true holds indices outside class_names")
    pred = p.argmax(axis=1)
    present = np.unique(y)
    cm = _confusions(y, pred, c)
    precision, recall, f1 = _prf(cm)
    shown = sorted(set(present.tolist()) | set(np.unique(pred).tolist()))
    result: dict[str, Any] = {
        "n": int(len(y)),
        "class_names": list(names),
        "classes_present": [names[i] for i in present],
        "accuracy": float((pred == y).mean()),
        "macro_f1": float(f1[present].mean()),
        "per_class": {names[i]: {"precision": float(precision[i]), "recall": float(recall[i]),
                                 "f1": float(f1[i]), "support": int(cm[i].sum())} for i in present},
        "confusion_labels": [names[i] for i in shown],
        "confusion_matrix": cm[np.ix_(shown, shown)].astype(int).tolist(),
        "auc_positive_class": positive,
        "auc_malignant": None,
    }
    pos_idx = names.index(positive) if positive in names else -1
    is_pos = y == pos_idx  # all False when the positive class is not the model's
    both = bool(0 < is_pos.sum() < len(y))
    if both:
        auc = float(auc_weighted(p[:, pos_idx], is_pos, np.ones((1, len(y))))[0])
        called = pred == pos_idx
        result.update({"auc_positive": auc,
                       "sensitivity": float((called & is_pos).sum() / is_pos.sum()),
                       "specificity": float((~called & ~is_pos).sum() / (~is_pos).sum())})
        if positive == "malignant":
            result["auc_malignant"] = auc
    if n_boot and n_boot > 0:
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, len(y), size=(int(n_boot), len(y)))
        w = np.zeros((int(n_boot), len(y)))
        np.add.at(w, (np.arange(int(n_boot))[:, None], idx), 1.0)
        cms = _confusions(y, pred, c, w)
        acc = np.trace(cms, axis1=1, axis2=2) / len(y)
        _, _, f1b = _prf(cms)
        support = cms.sum(axis=2) > 0  # classes present in each resample
        macro = (f1b * support).sum(axis=1) / support.sum(axis=1)
        result.update({"n_boot": int(n_boot), "boot_seed": int(seed), "accuracy_ci95": _ci(acc),
                       "macro_f1_ci95": _ci(macro), "auc_malignant_ci95": None})
        if both:
            auc_ci = _ci(auc_weighted(p[:, pos_idx], is_pos, w))
            tp, pos_n = (w * (called & is_pos)).sum(axis=1), (w * is_pos).sum(axis=1)
            tn, neg_n = (w * (~called & ~is_pos)).sum(axis=1), (w * ~is_pos).sum(axis=1)
            ok = (pos_n > 0) & (neg_n > 0)
            result.update({"auc_positive_ci95": auc_ci, "sensitivity_ci95": _ci(tp[ok] / pos_n[ok]),
                           "specificity_ci95": _ci(tn[ok] / neg_n[ok])})
            if positive == "malignant":
                result["auc_malignant_ci95"] = auc_ci
    return result


# --------------------------------------------------------------------------------------------------------
# Running a model over a dataset
# --------------------------------------------------------------------------------------------------------
def runtime_input(path: str | Path, spec: ModelSpec) -> np.ndarray:
    """float32 [1, 3, H, W]: the full image file as the runtime preprocesses a frame
    (``pipeline.preprocess.preprocess_image``; ``(H, W) = spec.input_size``)."""
    from sonolens.pipeline.preprocess import preprocess_image

    from .data import load_gray

    return preprocess_image(load_gray(path), spec)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


OOD_OUTPUT = "ood_score"


def logits_onnx(model_path: str | Path, paths: Sequence[Path]) -> tuple[np.ndarray, ModelSpec, np.ndarray | None]:
    """Logits [N, C] (float64), the spec and the ``ood_score`` [N] (``None`` when the file has none) of an ONNX
    model file, through the runtime's engine (its session, batch 1)."""
    from sonolens.pipeline.engines import OnnxEngine

    engine = OnnxEngine(str(model_path))
    names = ["logits"] + ([OOD_OUTPUT] if any(o.name == OOD_OUTPUT for o in engine.session.get_outputs()) else [])
    logits, scores = [], []
    for p in paths:
        out = engine.session.run(names, {engine.input_name: runtime_input(p, engine.meta)})
        logits.append(np.asarray(out[0], dtype=np.float32).reshape(-1))
        if len(out) > 1:
            scores.append(float(np.asarray(out[1]).reshape(-1)[0]))
    return (np.stack(logits).astype(np.float64), engine.meta,
            np.asarray(scores, np.float64) if len(names) > 1 else None)


def logits_checkpoint(model_path: str | Path, paths: Sequence[Path], batch_size: int = 32
                      ) -> tuple[np.ndarray, ModelSpec, None]:
    """Logits [N, C] (float64) and the spec of a training checkpoint (PyTorch, CPU), same preprocessing."""
    import torch

    from sonolens.models.checkpoint import load_checkpoint

    model = load_checkpoint(model_path).eval()
    spec = model.sonolens_spec
    out = []
    with torch.no_grad():
        for i in range(0, len(paths), batch_size):
            x = np.concatenate([runtime_input(p, spec) for p in paths[i:i + batch_size]])
            out.append(model(torch.from_numpy(x)).double().numpy())
    return np.concatenate(out), spec, None


def resolve_model(model: str | Path) -> Path:
    """A model path, or the installed file of a bundled model name: ``pipeline.engines.resolve_model_path``."""
    from sonolens.pipeline.engines import resolve_model_path

    return resolve_model_path(model)


def predict_logits(model_path: str | Path, paths: Sequence[Path]
                   ) -> tuple[np.ndarray, ModelSpec, np.ndarray | None]:
    """``(logits [N, C], spec, ood_score [N] or None)`` of an ONNX file, a bundled model name (``busi``,
    ``chest-xray``, as ``run`` and ``view`` accept) or a checkpoint."""
    model_path = resolve_model(model_path)
    if not model_path.is_file():
        raise ModelError(f"model {str(model_path)!r} does not exist")
    if model_path.suffix.lower() == ".onnx":
        return logits_onnx(model_path, paths)
    return logits_checkpoint(model_path, paths)


def predict_onnx(model_path: str | Path, paths: Sequence[Path]) -> tuple[np.ndarray, tuple[str, ...]]:
    """Class probabilities [N, C] from an ONNX model file via the runtime's engine (the file's temperature)."""
    logits, spec, _ = logits_onnx(model_path, paths)
    return _softmax(logits / spec.temperature), tuple(spec.class_names)


def predict_checkpoint(model_path: str | Path, paths: Sequence[Path], batch_size: int = 32
                       ) -> tuple[np.ndarray, tuple[str, ...]]:
    """Class probabilities [N, C] from a training checkpoint (PyTorch, CPU), same preprocessing."""
    logits, spec, _ = logits_checkpoint(model_path, paths, batch_size)
    return _softmax(logits / spec.temperature), tuple(spec.class_names)


def predict(model_path: str | Path, paths: Sequence[Path]) -> tuple[np.ndarray, tuple[str, ...]]:
    """Class probabilities ``softmax(logits / temperature)`` [N, C] and the class names."""
    logits, spec, _ = predict_logits(model_path, paths)
    return _softmax(logits / spec.temperature), tuple(spec.class_names)


def wilson(k: int, n: int, z: float = 1.959964) -> list[float]:
    """Wilson score 95 % interval of the proportion ``k/n``."""
    if n == 0:
        return [0.0, 1.0]
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [float(max(0.0, centre - half)), float(min(1.0, centre + half))]


def calibration_and_gate(logits: np.ndarray, y: Sequence[int], spec: ModelSpec, scores: np.ndarray | None, *,
                         n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """ECE (15 bins) of the runtime's probabilities with its bootstrap CI, the uncalibrated ECE, and — for a
    model with a gate — the images its ``ood_score`` flags (``score > spec.ood["threshold"]``)."""
    from .calibrate import ece, ece_bootstrap, softmax

    value, ci = ece_bootstrap(softmax(logits, spec.temperature), y, n_boot=n_boot, seed=seed)
    out: dict[str, Any] = {"temperature": spec.temperature, "ece": value, "ece_ci95": ci,
                           "ece_uncalibrated": ece(softmax(logits, 1.0), y), "ece_bins": 15, "ood": None}
    if scores is not None and spec.ood:
        thr = float(spec.ood["threshold"])
        flagged = scores > thr
        correct = logits.argmax(axis=1) == np.asarray(y)
        out["ood"] = {"method": spec.ood.get("candidate", spec.ood.get("method")), "threshold": thr,
                      "n": int(flagged.size), "n_flagged": int(flagged.sum()), "share_flagged": float(flagged.mean()),
                      "share_flagged_ci95": wilson(int(flagged.sum()), int(flagged.size)),
                      "accuracy_unflagged": float(correct[~flagged].mean()) if (~flagged).any() else None,
                      "accuracy_flagged": float(correct[flagged].mean()) if flagged.any() else None}
        out["ood_scores"] = scores.round(5).tolist()
    return out


def default_positive(class_names: Sequence[str]) -> str:
    """The class whose probability is scored for AUC/sensitivity: malignant (BUSI), else pneumonia, else the last."""
    for name in (POSITIVE, "pneumonia"):
        if name in class_names:
            return name
    return class_names[-1]


def evaluate_model(model_path: str | Path, samples, *, n_boot: int = 1000, seed: int = 0,
                   positive: str | None = None) -> dict[str, Any]:
    """Run ``model_path`` over ``samples`` (``data.Sample``) and compute ``evaluate_predictions``."""
    if not samples:
        raise ConfigError("no images to evaluate")
    logits, spec, scores = predict_logits(model_path, [s.path for s in samples])
    probs, class_names = _softmax(logits / spec.temperature), tuple(spec.class_names)
    index = {n.lower(): i for i, n in enumerate(class_names)}
    unknown = sorted({s.label for s in samples} - set(index))
    if unknown:
        raise ConfigError(f"dataset classes {', '.join(unknown)} are not among the model's classes "
                          f"({', '.join(class_names)})")
    y = [index[s.label] for s in samples]
    positive = positive or default_positive(class_names)
    if positive not in class_names:
        raise ConfigError(f"--positive {positive!r} is not one of the model's classes ({', '.join(class_names)})")
    result = evaluate_predictions(y, probs, class_names, n_boot=n_boot, seed=seed, positive=positive)
    result.update(calibration_and_gate(logits, y, spec, scores, n_boot=n_boot, seed=seed))
    result["model"] = str(model_path)
    result["probs"] = probs.round(6).tolist()
    result["files"] = [str(s.path) for s in samples]
    result["y_true"] = y
    return result


def _repo_relative(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it (a report names no machine's folders), else its
    name."""
    from .config import REPO_ROOT

    try:
        return path.resolve().relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return path.name


def training_overlap(model: str, samples: list, *, include: bool) -> tuple[list, dict[str, Any]]:
    """Which ``samples`` match the model's training images (its shipped hashes, ``training.train_hashes``): left out
    unless ``include``. Returns the samples to score and a record for the JSON (with a one-line ``message``)."""
    from . import train_hashes

    found = train_hashes.load(model)
    if found is None:
        return samples, {"checked": False, "message": "training overlap: not checked (this model ships no "
                                                      "training-image hashes)"}
    path, doc = found
    mask = train_hashes.seen(samples, doc)
    matched = [str(s.path) for s, m in zip(samples, mask) if m]
    rows = f"{', '.join(doc['splits'])} of {doc['source']} ({doc['n']} images)"
    record: dict[str, Any] = {"checked": True, "hashes": _repo_relative(path), "training_rows": rows,
                              "matched": len(matched),
                              "excluded": bool(matched) and not include, "matched_files": matched}
    if not matched:
        record["message"] = (f"training overlap: none of the {len(samples)} images matches an image the model was "
                             f"trained or validated on")
        return samples, record
    kept = samples if include else [s for s, m in zip(samples, mask) if not m]
    if not kept:
        raise ConfigError(f"all {len(samples)} images match images the model was trained or validated on "
                          f"({record['training_rows']}); --include-train scores them anyway")
    record["message"] = (f"training overlap: {len(matched)} of {len(samples)} images match images the model was "
                         f"trained or validated on ({record['training_rows']}) — " + (
                             "kept (--include-train): figures on them are optimistic" if include
                             else "left out; --include-train keeps them"))
    return kept, record


def save_confusion_png(result: dict[str, Any], path: str | Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(result["confusion_matrix"])
    labels = result["confusion_labels"]
    present = set(result["classes_present"])
    rows = [i for i, n in enumerate(labels) if n in present]
    cm = cm[rows]
    fig, ax = plt.subplots(figsize=(1.2 * len(labels) + 2.5, 1.1 * len(rows) + 2))
    ax.imshow(cm, cmap="Blues")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center",
                    color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(rows)), [labels[i] for i in rows])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ci = result.get("accuracy_ci95")
    sub = f"acc {result['accuracy']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
    sub += f", macro-F1 {result['macro_f1']:.3f}, n={result['n']}"
    ax.set_title(f"{title}\n{sub}" if title else sub, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def format_report(r: dict[str, Any]) -> str:
    def ci(key: str) -> str:
        v = r.get(key)
        return f" [{v[0]:.3f}, {v[1]:.3f}]" if v else ""

    lines = [f"n={r['n']}  accuracy {r['accuracy']:.3f}{ci('accuracy_ci95')}  "
             f"macro-F1 {r['macro_f1']:.3f}{ci('macro_f1_ci95')}"]
    if r.get("auc_positive") is not None:
        pos = r["auc_positive_class"]
        lines.append(f"AUC {pos}-vs-rest {r['auc_positive']:.3f}{ci('auc_positive_ci95')}")
        lines.append(f"sensitivity ({pos}) {r['sensitivity']:.3f}{ci('sensitivity_ci95')}, "
                     f"specificity {r['specificity']:.3f}{ci('specificity_ci95')}")
    if r.get("ece") is not None:
        lines.append(f"calibration: ECE (15 bins) {r['ece']:.3f}{ci('ece_ci95')} at temperature "
                     f"{r['temperature']:.3f} (uncalibrated {r['ece_uncalibrated']:.3f})")
    g = r.get("ood")
    if g:
        lo, hi = g["share_flagged_ci95"]
        acc = g["accuracy_unflagged"]
        lines.append(f"out-of-domain gate ({g['method']}, threshold {g['threshold']:.4g}): {g['n_flagged']} of "
                     f"{g['n']} flagged ({100 * g['share_flagged']:.1f} % [{100 * lo:.1f}, {100 * hi:.1f}]); "
                     f"accuracy on the rest {'—' if acc is None else f'{acc:.3f}'}")
    lines.append(f"{'class':<12}{'precision':>10}{'recall':>8}{'F1':>8}{'support':>9}")
    for name, m in r["per_class"].items():
        lines.append(f"{name:<12}{m['precision']:>10.3f}{m['recall']:>8.3f}{m['f1']:>8.3f}{m['support']:>9d}")
    lines.append("confusion (rows true, cols predicted): " + ", ".join(r["confusion_labels"]))
    for name, row in zip(r["confusion_labels"], r["confusion_matrix"]):
        if name in r["classes_present"]:
            lines.append(f"  {name:<12}" + " ".join(f"{v:>5d}" for v in row))
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sonolens eval",
                                description="Evaluate an ONNX model or a training checkpoint on a labelled dataset "
                                            "(folder per class, or a split CSV). Research use only.")
    p.add_argument("--model", required=True,
                   help="model.onnx, a bundled model name (busi, busi-mnv3, busi-uclm, chest-xray) or a training "
                        "checkpoint "
                        "(best.pt)")
    p.add_argument("--data", required=True, help="dataset root: one sub-folder per class, or the root of --split-file")
    p.add_argument("--split-file", default=None, help="split CSV (file,label,group,split), files relative to --data")
    p.add_argument("--split", default=None, help="split name(s) to use from --split-file, comma-separated (e.g. test)")
    p.add_argument("--json", default=None, help="write the metrics (and per-image probabilities) as JSON")
    p.add_argument("--png", default=None, help="write the confusion matrix as a PNG")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples for the 95%% CIs (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--positive", default=None,
                   help="class scored for AUC, sensitivity and specificity (default: malignant, else pneumonia)")
    p.add_argument("--include-train", action="store_true",
                   help="keep images that match the model's training images (its .trainhash.json); by default they "
                        "are left out and counted")
    return p


def cli_main(argv: list[str]) -> int:
    from .data import read_class_folders, read_split_csv

    args = _parser().parse_args(argv)
    if args.split and not args.split_file:
        raise ConfigError("--split needs --split-file")
    if args.split_file:
        split = args.split.split(",") if args.split else None
        samples = read_split_csv(args.split_file, args.data, split)
    else:
        samples = read_class_folders(args.data)
    samples, overlap = training_overlap(args.model, samples, include=args.include_train)
    print(overlap["message"])
    result = evaluate_model(args.model, samples, n_boot=args.n_boot, seed=args.seed, positive=args.positive)
    result["training_overlap"] = overlap
    result["data"] = str(args.data)
    result["split_file"] = args.split_file
    result["split"] = args.split
    print(format_report(result))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1), encoding="utf-8")
        print(f"metrics: {args.json}", file=sys.stderr)
    if args.png:
        title = f"{Path(args.model).name} on {Path(args.data).name}" + (f" ({args.split})" if args.split else "")
        save_confusion_png(result, args.png, title)
        print(f"confusion matrix: {args.png}", file=sys.stderr)
    return 0
