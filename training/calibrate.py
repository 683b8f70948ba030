"""Probability calibration: temperature scaling, expected calibration error, reliability diagrams.

* ``fit_temperature(logits, y)`` — temperature scaling (Guo et al., ICML 2017): the single ``T > 0`` that
  minimises the negative log-likelihood of ``softmax(logits / T)`` on held-out (validation) data. The NLL is
  convex in ``1/T``; it is minimised by golden-section search on ``log T`` over [0.05, 20] to 1e-6. Argmax, and so
  accuracy, is unchanged by ``T``; only confidence moves. The runtime applies ``ModelSpec.temperature``.
* ``ece(probs, y)`` — expected calibration error with 15 equal-width confidence bins (as Guo et al.):
  ``Σ_b |B_b|/n · |accuracy(B_b) − mean confidence(B_b)|``, confidence = the top probability, bin ``b`` holding
  confidences in ``(b/15, (b+1)/15]`` (the first also 0). ``ece_bootstrap`` adds a percentile 95 % CI.
* ``reliability_diagram`` — accuracy against confidence per bin, before and after scaling, as a PNG.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

N_BINS = 15
Labels = Sequence[int] | np.ndarray  # class indices [N]
T_RANGE = (0.05, 20.0)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def nll(logits: np.ndarray, y: Labels, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of labels ``y`` under ``softmax(logits / temperature)``."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    labels = np.asarray(y, dtype=np.int64)
    return float(-log_p[np.arange(len(labels)), labels].mean())


def fit_temperature(logits: np.ndarray, y: Labels, t_range: tuple[float, float] = T_RANGE,
                    tol: float = 1e-6) -> float:
    """The temperature minimising ``nll(logits, y, T)`` over ``t_range`` (golden-section search on log T)."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(y, dtype=np.int64)
    if logits.ndim != 2 or len(logits) != len(labels) or len(labels) == 0:
        raise ValueError(f"need logits [N, C] and N labels, got {logits.shape} and {len(labels)}")
    a, b = np.log(t_range[0]), np.log(t_range[1])
    g = (np.sqrt(5.0) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = nll(logits, labels, np.exp(c)), nll(logits, labels, np.exp(d))
    while b - a > tol:
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = nll(logits, labels, np.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = nll(logits, labels, np.exp(d))
    return float(np.exp((a + b) / 2))


def _bins(conf: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin index of each confidence: ``(b/n, (b+1)/n]`` → b, 0 → 0."""
    return np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)


def reliability(probs: np.ndarray, y: Labels, n_bins: int = N_BINS) -> dict[str, Any]:
    """Per-bin counts, accuracy and mean confidence (``None`` for empty bins) and the ECE."""
    p = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(y, dtype=np.int64)
    conf, correct = p.max(axis=1), (p.argmax(axis=1) == labels).astype(np.float64)
    b = _bins(conf, n_bins)
    count = np.bincount(b, minlength=n_bins).astype(np.float64)
    acc_sum = np.bincount(b, weights=correct, minlength=n_bins)
    conf_sum = np.bincount(b, weights=conf, minlength=n_bins)
    ok = count > 0
    acc = np.where(ok, acc_sum / np.maximum(count, 1), np.nan)
    mc = np.where(ok, conf_sum / np.maximum(count, 1), np.nan)
    e = float((np.abs(acc_sum - conf_sum)).sum() / max(len(labels), 1))
    return {"n_bins": n_bins, "count": count.astype(int).tolist(),
            "accuracy": [None if not k else float(v) for k, v in zip(ok, acc)],
            "confidence": [None if not k else float(v) for k, v in zip(ok, mc)], "ece": e}


def ece(probs: np.ndarray, y: Labels, n_bins: int = N_BINS) -> float:
    """Expected calibration error (``n_bins`` equal-width bins of the top probability)."""
    return float(reliability(probs, y, n_bins)["ece"])


def ece_bootstrap(probs: np.ndarray, y: Labels, n_boot: int = 2000, seed: int = 0,
                  n_bins: int = N_BINS) -> tuple[float, list[float] | None]:
    """``ece`` and its percentile bootstrap 95 % CI (resampling images; ``n_boot=0``: no CI)."""
    p = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(y, dtype=np.int64)
    value = ece(p, labels, n_bins)
    if n_boot <= 0:
        return value, None
    conf, correct = p.max(axis=1), (p.argmax(axis=1) == labels).astype(np.float64)
    b = _bins(conf, n_bins)
    n = len(labels)
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    gap = correct - conf  # ECE = Σ_bins |Σ_{i in bin} gap_i| / n
    sums = np.zeros((n_boot, n_bins))
    np.add.at(sums, (np.repeat(np.arange(n_boot), n), b[idx].ravel()), gap[idx].ravel())
    boots = np.abs(sums).sum(axis=1) / n
    return value, [float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))]


def calibration_summary(logits: np.ndarray, y: Labels, temperature: float, *, n_boot: int = 2000,
                        seed: int = 0) -> dict[str, Any]:
    """ECE (with CI), NLL and reliability bins of ``logits`` before (T = 1) and after scaling by ``temperature``."""
    out: dict[str, Any] = {"n": int(len(y)), "temperature": float(temperature), "n_bins": N_BINS}
    for key, t in (("uncalibrated", 1.0), ("calibrated", float(temperature))):
        p = softmax(logits, t)
        e, ci = ece_bootstrap(p, y, n_boot=n_boot, seed=seed)
        out[key] = {"ece": e, "ece_ci95": ci, "nll": nll(logits, y, t), "reliability": reliability(p, y)}
    return out


def reliability_diagram(panels: Sequence[tuple[str, dict[str, Any]]], path: str | Path) -> Path:
    """One reliability panel per ``(title, calibration_summary)``: accuracy per confidence bin before (grey)
    and after (blue) temperature scaling, the diagonal, and both ECEs in the legend. Written as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(4, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 4.2 * rows), squeeze=False)
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    for ax, (title, s) in zip(axes.ravel(), panels):
        width = 1.0 / N_BINS
        centers = (np.arange(N_BINS) + 0.5) * width
        for key, colour, label, shift in (("uncalibrated", "0.6", "T = 1", -0.22),
                                          ("calibrated", "tab:blue", f"T = {s['temperature']:.2f}", 0.22)):
            r = s[key]["reliability"]
            acc = np.array([np.nan if v is None else v for v in r["accuracy"]])
            ci = s[key]["ece_ci95"]
            ci_txt = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
            ax.bar(centers + shift * width, np.nan_to_num(acc), width=0.44 * width, color=colour,
                   label=f"{label}: ECE {s[key]['ece']:.3f}{ci_txt}")
        ax.plot([0, 1], [0, 1], "k--", lw=0.8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence (top probability)")
        ax.set_ylabel("accuracy")
        ax.set_title(f"{title} (n={s['n']})", fontsize=9)
        ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
