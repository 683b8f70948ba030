"""``sonolens cine-eval``: a breast model on real cine video, clip by clip and patient by patient.

Every frame of every clip in ``clips.csv`` (``../shared/videos/breast_cine``: file, label, patient, …) goes through
the real pipeline (``pipeline.stream.build``, ``--max-rate``, no CAM), exactly as ``sonolens run`` would show it.
Per clip: the share of frames the out-of-domain gate flags, the clip's score — the mean P(malignant) over the frames
the gate lets through (and over all frames, for comparison) — and the top-class changes per second over the shown
frames, raw and after the overlay's smoothing (``--ema``). Per patient: the mean of its clips' scores. AUCs (malignant
vs benign) with percentile 95 % CIs from resampling whole patients (``external_eval.cluster_bootstrap``).

An external test: this command only measures; nothing here feeds training, selection, thresholds or calibration.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sonolens.pipeline.errors import ConfigError
from sonolens.pipeline.outputs import check_writable, write_text_atomic

from .clip_report import ClipFrames, clip_frames
from .external_eval import auc, cluster_bootstrap
from .temporal import _flips

DEFAULT_CINE = "../shared/videos/breast_cine"


def read_clips(root: Path) -> list[dict[str, str]]:
    """Rows of ``root/clips.csv`` with ``file``, ``label`` (benign | malignant) and ``patient``."""
    path = root / "clips.csv"
    if not path.is_file():
        raise ConfigError(f"{path} not found (a cine folder needs clips.csv: file,label,patient,...)")
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or not {"file", "label", "patient"} <= set(rows[0]):
        raise ConfigError(f"{path}: needs the columns file, label, patient")
    return rows


def changes_per_s(top: Sequence[int], states: Sequence[str], fps: float) -> float:
    """Top-class changes per second over the frames that show a prediction (state ``ok``), per second of clip."""
    shown = [t for t, s in zip(top, states) if s == "ok"]
    return _flips(shown) / (len(states) / fps) if states else float("nan")


def clip_row(row: dict[str, str], frames: ClipFrames, smoothed: ClipFrames | None) -> dict[str, Any]:
    names, states, raw = frames.names, frames.states, frames.raw
    if "malignant" not in names:
        raise ConfigError(f"the model has no 'malignant' class ({', '.join(names)})")
    p_mal = raw[:, names.index("malignant")]
    ok = np.array([s == "ok" for s in states])
    fps = float(row.get("fps") or 30.0)
    raw_top = [int(v) for v in raw.argmax(axis=1)]
    out = {"file": row["file"], "label": row["label"], "patient": row["patient"], "frames": len(states),
           "flagged": float(np.mean([s == "out_of_domain" for s in states])),
           "score_gated": float(p_mal[ok].mean()) if ok.any() else None, "score_all": float(p_mal.mean()),
           "changes_per_s_raw": changes_per_s(raw_top, states, fps)}
    out["changes_per_s_all_frames"] = changes_per_s(raw_top, ["ok"] * len(states), fps)  # the gate ignored
    if smoothed is not None:
        s_ok = np.array([s == "ok" for s in smoothed.states])
        p_shown = smoothed.shown[:, names.index("malignant")]
        out["changes_per_s_smoothed"] = changes_per_s(smoothed.shown_top, smoothed.states, fps)
        out["changes_per_s_smoothed_all_frames"] = changes_per_s(smoothed.shown_top, ["ok"] * len(states), fps)
        out["score_gated_smoothed"] = float(p_shown[s_ok].mean()) if s_ok.any() else None
    return out


def auc_with_ci(scores: np.ndarray, positive: np.ndarray, groups: Sequence[str], n_boot: int) -> dict[str, Any]:
    keep = np.isfinite(scores)
    s, y, g = scores[keep], positive[keep], [x for x, k in zip(groups, keep) if k]
    value = auc(s, y)
    ci = cluster_bootstrap(g, lambda idx: auc(s[idx], y[idx]), n_boot=n_boot)
    return {"auc": value, "ci": ci, "n": int(keep.sum()), "n_patients": len(set(g))}


def summarise(rows: list[dict[str, Any]], n_boot: int = 2000) -> dict[str, Any]:
    """Clip- and patient-level AUCs with patient-bootstrap CIs, flagged shares and stability over ``rows``."""
    y = np.array([r["label"] == "malignant" for r in rows])
    pats = [r["patient"] for r in rows]
    gated = np.array([np.nan if r["score_gated"] is None else r["score_gated"] for r in rows], float)
    every = np.array([r["score_all"] for r in rows], float)
    out: dict[str, Any] = {"clips": len(rows), "patients": len(set(pats)),
                           "frames": int(sum(r["frames"] for r in rows))}
    out["flagged_frames"] = float(sum(r["flagged"] * r["frames"] for r in rows) / max(1, out["frames"]))
    out["clips_over_half_flagged"] = int(sum(r["flagged"] > 0.5 for r in rows))
    out["clip_auc_gated"] = auc_with_ci(gated, y, pats, n_boot)
    out["clip_auc_all"] = auc_with_ci(every, y, pats, n_boot)
    for name, scores in (("patient_auc_gated", gated), ("patient_auc_all", every)):
        ids = sorted(set(pats))
        ps = np.array([np.nanmean([s for s, p in zip(scores, pats) if p == i]) if any(
            np.isfinite(s) for s, p in zip(scores, pats) if p == i) else np.nan for i in ids])
        py = np.array([next(r["label"] for r in rows if r["patient"] == i) == "malignant" for i in ids])
        out[name] = auc_with_ci(ps, py, ids, n_boot)
    if all(r.get("score_gated_smoothed", "absent") != "absent" for r in rows):
        sm = np.array([np.nan if r["score_gated_smoothed"] is None else r["score_gated_smoothed"] for r in rows])
        out["clip_auc_gated_smoothed"] = auc_with_ci(sm, y, pats, n_boot)
    for key in ("changes_per_s_raw", "changes_per_s_all_frames", "changes_per_s_smoothed",
                "changes_per_s_smoothed_all_frames"):
        vals = [r[key] for r in rows if key in r and np.isfinite(r[key])]
        if vals:
            out[key] = {"median": float(np.median(vals)), "mean": float(np.mean(vals))}
    return out


def join_pairs(rows: list[dict[str, str]], n: int) -> list[tuple[dict[str, str], dict[str, str]]]:
    """``n`` (benign clip, malignant clip) pairs by a fixed rule that reads no score: the first clip of the i-th benign
    patient with the first clip of the i-th malignant patient, in ``clips.csv`` order."""
    firsts: dict[str, dict[str, dict[str, str]]] = {"benign": {}, "malignant": {}}
    for row in rows:
        firsts.get(row["label"], {}).setdefault(row["patient"], row)
    return list(zip(list(firsts["benign"].values())[:n], list(firsts["malignant"].values())[:n]))


def join_clip(a: Path, b: Path, out: Path, fps: float = 30.0) -> int:
    """``a`` then ``b`` as one clip at ``fps`` (``out``, H.264); returns the frame index of the join."""
    import av

    from sonolens.pipeline.videoio import VideoWriter

    def frames(p: Path):
        with av.open(str(p)) as c:
            for f in c.decode(video=0):
                yield f.to_ndarray(format="rgb24")

    first = list(frames(a))
    with VideoWriter(out, fps, size=(first[0].shape[1], first[0].shape[0]), crf=18) as w:
        for img in first:
            w.write(img)
        for img in frames(b):
            w.write(img)
    return len(first)


def join_test(rows: list[dict[str, str]], root: Path, model: str, n: int, decision_s: float, margin: float,
              workdir: Path) -> dict[str, Any]:
    """The issue's test on real clips: a benign clip joined to a malignant one, and how long after the join the shown
    class (``--decision``) turns malignant. Pairs whose post-join frames the model itself does not call malignant
    (raw top class on fewer than half of them) cannot switch, and are counted apart."""
    out: list[dict[str, Any]] = []
    for a, b in join_pairs(rows, n):
        clip = workdir / f"{Path(a['file']).stem}+{Path(b['file']).stem}.mp4"
        join = join_clip(root / a["file"], root / b["file"], clip)
        fr = clip_frames(clip, model, decision_s=decision_s, decision_margin=margin)
        names, raw, shown = fr.names, fr.raw, fr.shown_top
        mal = names.index("malignant")
        after = raw[join:].argmax(axis=1)
        switch = next((i for i in range(join, len(shown)) if shown[i] == mal), None)
        out.append({"benign": a["file"], "malignant": b["file"], "join_frame": join,
                    "raw_malignant_after_join": float(np.mean(after == mal)),
                    "switch_s": None if switch is None else (switch - join) / 30.0})
    followable = [r for r in out if float(r["raw_malignant_after_join"]) >= 0.5]
    switches = [float(r["switch_s"]) for r in followable if r["switch_s"] is not None]
    return {"pairs": out, "followable": len(followable), "switched_within_2s": sum(s <= 2.0 for s in switches),
            "median_switch_s": float(np.median(switches)) if switches else None}


def _fmt(a: dict[str, Any]) -> str:
    ci = a.get("ci")
    return f"{a['auc']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "") + f" (n={a['n']})"


def markdown(model: str, s: dict[str, Any]) -> str:
    lines = [f"### {model}", "",
             f"{s['clips']} clips of {s['patients']} patients, {s['frames']} frames", "",
             "| measure | value |", "|---|---|",
             f"| frames flagged by the gate | {100 * s['flagged_frames']:.1f} % |",
             f"| clips with more than half their frames flagged | {s['clips_over_half_flagged']} of {s['clips']} |",
             f"| clip AUC, mean P(malignant) over frames the gate lets through | {_fmt(s['clip_auc_gated'])} |",
             f"| clip AUC, over all frames | {_fmt(s['clip_auc_all'])} |",
             f"| patient AUC, gated | {_fmt(s['patient_auc_gated'])} |",
             f"| patient AUC, all frames | {_fmt(s['patient_auc_all'])} |"]
    if "clip_auc_gated_smoothed" in s:
        lines.append(f"| clip AUC, gated, mean of the shown (smoothed) P(malignant) | "
                     f"{_fmt(s['clip_auc_gated_smoothed'])} |")
    for key, label in (("changes_per_s_raw", "shown-class changes per second, raw, frames the gate lets through"),
                       ("changes_per_s_all_frames", "top-class changes per second, raw, every frame"),
                       ("changes_per_s_smoothed", "shown-class changes per second, smoothed, frames the gate lets "
                                                  "through"),
                       ("changes_per_s_smoothed_all_frames", "shown-class changes per second, smoothed, every frame")):
        if key in s:
            lines.append(f"| {label} (median / mean over clips) | {s[key]['median']:.2f} / {s[key]['mean']:.2f} |")
    return "\n".join(lines) + "\n"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sonolens cine-eval",
        description="A breast model on real cine clips (clips.csv: file,label,patient): gate share, clip- and "
                    "patient-level AUC of the mean P(malignant) with patient-bootstrap CIs, top-class changes per "
                    "second. An external test: it only measures. Research use only.")
    p.add_argument("--model", default="busi", help="ONNX file or bundled name (default: busi)")
    p.add_argument("--cine", default=DEFAULT_CINE, help=f"folder with clips.csv (default: {DEFAULT_CINE})")
    smooth = p.add_mutually_exclusive_group()
    smooth.add_argument("--ema", type=float, default=None,
                        help="also measure the overlay with this per-frame smoothing (the run's --ema)")
    smooth.add_argument("--decision", type=float, default=None, metavar="SECONDS",
                        help="also measure the overlay with the video-level decision (the run's --decision)")
    p.add_argument("--decision-margin", type=float, default=0.15)
    p.add_argument("--joins", type=int, default=0, metavar="N",
                   help="also join N benign clips to N malignant ones (fixed pairs) and measure how long after the "
                        "join the shown class (--decision, default 1 s) turns malignant")
    p.add_argument("--limit", type=int, default=None, help="only the first N clips (a quick look)")
    p.add_argument("--n-boot", type=int, default=2000)
    p.add_argument("--json", help="write the per-clip rows and the summary here")
    p.add_argument("--md", help="write the Markdown table here")
    return p


def cli_main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    for out in (args.json, args.md):
        if out:
            check_writable(out, "output")  # before minutes of decoding, not after
    root = Path(args.cine)
    rows_in = read_clips(root)[: args.limit]
    smoothing: dict[str, float] | None = None
    if args.ema:
        smoothing = {"ema": args.ema}
    elif args.decision:
        smoothing = {"decision_s": args.decision, "decision_margin": args.decision_margin}
    rows = []
    for i, row in enumerate(rows_in):
        clip = root / row["file"]
        frames = clip_frames(clip, args.model)
        smoothed = clip_frames(clip, args.model, **smoothing) if smoothing else None
        rows.append(clip_row(row, frames, smoothed))
        print(f"\rcine-eval: {i + 1}/{len(rows_in)} clips", end="", flush=True)
    print()
    summary = summarise(rows, n_boot=args.n_boot) if rows else {}  # --limit 0 --joins N: the join test alone
    text = markdown(args.model, summary) if rows else f"### {args.model}\n"
    if args.joins:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            summary["joins"] = join_test(read_clips(root), root, args.model, args.joins, args.decision or 1.0,
                                         args.decision_margin, Path(tmp))
        j = summary["joins"]
        text += (f"\nJoined clips ({len(j['pairs'])} benign→malignant pairs, decision "
                 f"{args.decision or 1.0:g} s): the model calls the malignant half malignant in {j['followable']}; "
                 f"of those, the shown class turned malignant within 2 s of the join in {j['switched_within_2s']} "
                 f"(median {j['median_switch_s'] if j['median_switch_s'] is None else round(j['median_switch_s'], 2)}"
                 f" s).\n")
    print(text)
    if args.json:
        write_text_atomic(args.json, json.dumps({"model": args.model, "smoothing": smoothing, "summary": summary,
                                                 "clips": rows}, indent=1) + "\n", "cine-eval JSON")
    if args.md:
        write_text_atomic(args.md, text, "cine-eval table")
    return 0
