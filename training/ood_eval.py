"""``sonolens ood-eval``: how well a model file knows when it does not know — measured, with confidence intervals.

For each ``--model`` (an ONNX file with an ``ood_score`` output, ``sonolens fit-ood``):

1. **Method table** (``--select``, on by default): every candidate score of ``training.ood.candidates`` (from the
   model's student adapter) is fitted on the *training* rows of the model's gate split (``training.ood.gate_split``:
   breast models BUSI + BUS-UCLM, two scanners) and scored by AUROC of that split's **validation** rows against each
   far out-of-domain selection set (``training.ood.suite_sets(..., "select")``). Where the split holds several
   scanners, each candidate also gets its **cross-scanner share** (``training.ood.cross_source_shares``: fitted on
   one scanner, the share of the other's train + val images it flags; the mean over both directions), the stand-in
   for a hospital it has never seen. The rule is fixed here (``select_candidate``): among the candidates whose
   minimum far AUROC reaches the issue's 0.95, the lowest cross-scanner share (within 0.01 counts as tied: fewer
   parts win); with no cross-scanner share, or no candidate at 0.95, the highest minimum AUROC (within 0.005: fewer
   parts).
2. **Report** on the *shipped file itself* (its graph's ``ood_score``, the runtime's preprocessing, batch 1):
   AUROC of in-domain **test** images vs every far set with a percentile bootstrap 95 % CI (clips resampled as
   whole clips), the share flagged at the file's threshold (Wilson 95 % CI; clips: clip bootstrap), per-clip /
   per-kind shares, the report-only sets (the external breast set, simulated sample clips), calibration (ECE
   with 15 bins before and after the file's temperature, on the test split and the external set), and the p50
   latency of a forward pass with and without the score (a small timing loop, not a test).

Writes ``OUT.json`` (every number), ``OUT.md`` (the tables), ``OUT_reliability.png`` and ``OUT_scores.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from sonolens.pipeline.errors import ConfigError

from . import ood
from .calibrate import calibration_summary, reliability_diagram
from .evaluate import auc_weighted, wilson

TIE = 0.005  # minimum far AUROC within this of the best: tied
SHARE_TIE = 0.01  # cross-scanner share within this of the lowest: tied
FAR_TARGET = 0.95  # the AUROC target for every far set
CROSS_TARGET = 0.05  # cross-hospital rule: at most this share of a held-out training hospital's images flagged
CROSS_TIE = 0.01  # minimum far share flagged within this of the best: tied


# ------------------------------------------------------------------------------------------------------------
# Statistics
# ------------------------------------------------------------------------------------------------------------
def _group_weights(groups: list[str] | None, n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """[n_boot, n] multiplicity weights of a bootstrap that resamples items, or whole groups when ``groups``."""
    if groups is None:
        idx = rng.integers(0, n, size=(n_boot, n))
        w = np.zeros((n_boot, n))
        np.add.at(w, (np.arange(n_boot)[:, None], idx), 1.0)
        return w
    names, inv = np.unique(np.asarray(groups), return_inverse=True)
    gi = rng.integers(0, len(names), size=(n_boot, len(names)))
    gw = np.zeros((n_boot, len(names)))
    np.add.at(gw, (np.arange(n_boot)[:, None], gi), 1.0)
    return gw[:, inv]


def auroc(in_scores: np.ndarray, out_scores: np.ndarray, *, out_groups: list[str] | None = None,
          n_boot: int = 2000, seed: int = 0) -> tuple[float, list[float] | None]:
    """AUROC of ``out_scores`` (positives: out of domain) against ``in_scores``, ties ½, with a percentile
    bootstrap 95 % CI that resamples each side separately (the out side by whole groups when ``out_groups``)."""
    s = np.r_[np.asarray(in_scores, np.float64), np.asarray(out_scores, np.float64)]
    pos = np.r_[np.zeros(len(in_scores), bool), np.ones(len(out_scores), bool)]
    value = float(auc_weighted(s, pos, np.ones((1, len(s))))[0])
    if n_boot <= 0:
        return value, None
    rng = np.random.default_rng(seed)
    w = np.concatenate([_group_weights(None, len(in_scores), n_boot, rng),
                        _group_weights(out_groups, len(out_scores), n_boot, rng)], axis=1)
    boots = auc_weighted(s, pos, w)
    boots = boots[np.isfinite(boots)]
    return value, [float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))]


def flagged_share(scores: np.ndarray, threshold: float, groups: list[str] | None = None, n_boot: int = 2000,
                  seed: int = 0) -> dict[str, Any]:
    """Share of ``scores`` above ``threshold``: Wilson CI for independent images; for clustered items (``groups``:
    clip frames) a percentile bootstrap over whole groups, and the share per group."""
    flag = np.asarray(scores) > threshold
    out: dict[str, Any] = {"n": int(flag.size), "n_flagged": int(flag.sum()), "share": float(flag.mean())}
    if groups is None:
        out["share_ci95"], out["ci_method"] = wilson(int(flag.sum()), int(flag.size)), "Wilson"
        return out
    w = _group_weights(groups, flag.size, n_boot, np.random.default_rng(seed))
    boots = (w * flag).sum(axis=1) / w.sum(axis=1)
    out["share_ci95"] = [float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))]
    out["ci_method"] = "bootstrap over groups"
    g = np.asarray(groups)
    out["per_group"] = {str(name): {"n": int((g == name).sum()), "share": float(flag[g == name].mean())}
                        for name in dict.fromkeys(groups)}
    return out


# ------------------------------------------------------------------------------------------------------------
# 1. the method table
# ------------------------------------------------------------------------------------------------------------
def select_candidate(rows: list[dict[str, Any]], tie: float = TIE, share_tie: float = SHARE_TIE,
                     far_target: float = FAR_TARGET) -> dict[str, Any]:
    """The rule. With a cross-scanner share on every row: among the rows whose minimum far-set AUROC reaches
    ``far_target``, the lowest share; rows within ``share_tie`` of it are tied and the fewest parts win (then the
    lower share, then the higher minimum AUROC). Otherwise (no shares, or no row reaches the target): the highest
    minimum AUROC; within ``tie`` of it, fewest parts, then the higher minimum."""
    shares = all(r.get("cross_scanner") is not None for r in rows)
    ok = [r for r in rows if r["min_far_auroc"] >= far_target] if shares else []
    if ok:
        low = min(r["cross_scanner"] for r in ok)
        tied = [r for r in ok if r["cross_scanner"] <= low + share_tie]
        return min(tied, key=lambda r: (r["n_parts"], r["cross_scanner"], -r["min_far_auroc"]))
    best = max(r["min_far_auroc"] for r in rows)
    tied = [r for r in rows if r["min_far_auroc"] >= best - tie]
    return min(tied, key=lambda r: (r["n_parts"], -r["min_far_auroc"]))


def select_cross_hospital(rows: list[dict[str, Any]], tie: float = CROSS_TIE) -> dict[str, Any] | None:
    """The cross-hospital rule (the breast issue, item 5: selected on X-rays, photos and noise, judged at the
    threshold): the highest minimum share of the far selection sets flagged at the cross-hospital threshold
    (``training.ood.cross_hospital_threshold``, ``CROSS_TARGET``); within ``tie`` of it, fewest parts, then the
    higher minimum far AUROC. ``None`` where the gate split has one source."""
    ok = [r for r in rows if r.get("min_far_flagged_cross") is not None]
    if not ok:
        return None
    best = max(r["min_far_flagged_cross"] for r in ok)
    tied = [r for r in ok if r["min_far_flagged_cross"] >= best - tie]
    return min(tied, key=lambda r: (r["n_parts"], -r["min_far_flagged_cross"], -r["min_far_auroc"]))


def _cross_hospital_columns(levels: dict[str, float] | None, val_scores: np.ndarray, gate: Any,
                            far: list[Any]) -> dict[str, Any]:
    """A candidate at the cross-hospital threshold (``levels``: ``ood.levels_of``): its level and the share of each
    far set flagged (the report-only clips left out)."""
    if levels is None:
        return {"cross_levels": None, "far_flagged_cross": None, "min_far_flagged_cross": None}
    thr = ood.cross_hospital_threshold(val_scores, levels)
    flagged = {s.name: float((ood.gate_scores(gate, s) > thr).mean()) for s in far if not s.report_only}
    return {"cross_levels": levels, "far_flagged_cross": flagged, "min_far_flagged_cross": min(flagged.values())}


def method_table(model: Path, shared: Path, *, threads: int = 1, log=print,
                 skip_report_only: bool = False, cross_target: float = CROSS_TARGET) -> dict[str, Any]:
    """Fit every candidate on the gate split's train rows; AUROC of its val rows vs each far selection set, and
    the cross-scanner share where the split has several scanners. ``skip_report_only``: the sets read only for
    the report (``ImageSet.report_only``) are not even opened (the cross-hospital rule does not use them)."""
    ext = ood.Extractor(model, None, threads=threads)  # every key of the candidates of its student
    root, csv = ood.gate_split(ext.spec, shared)
    t0 = time.perf_counter()
    train = ext.features(ood.split_set("train", "in", root, csv, "train", ext.spec.class_names))
    sets = [ext.features(s) for s in ood.suite_sets(ext.spec, shared, "select")
            if not (skip_report_only and s.report_only)]
    log(f"  features of {train.n + sum(s.n for s in sets)} images in {time.perf_counter() - t0:.0f} s")
    val = next(s for s in sets if s.role == "in")
    far = [s for s in sets if s.role == "far"]
    sources = sorted(set(train.sources()))
    rows = []
    for cand in ood.candidates(ext.adapter):
        gate = ood.fit_gate(cand, train)
        v = ood.gate_scores(gate, val)
        row: dict[str, Any] = {"candidate": cand.name, "method": cand.method, "n_parts": len(cand.keys), "auroc": {}}
        for s in far:
            row["auroc"][s.name] = auroc(v, ood.gate_scores(gate, s), n_boot=0)[0]
        row["min_far_auroc"] = min(row["auroc"].values())
        loso = ood.leave_source_out(cand, train, val)  # one fit per source for both columns
        by_source = ood.shares_of(loso)
        row["cross_scanner_by_source"] = by_source
        row["cross_scanner"] = None if by_source is None else float(np.mean(list(by_source.values())))
        row.update(_cross_hospital_columns(ood.levels_of(loso, cross_target), v, gate, far))
        rows.append(row)
    chosen = select_candidate(rows)
    cross = select_cross_hospital(rows)
    with_shares = len(sources) > 1
    rule = (f"among the candidates with minimum far AUROC >= {FAR_TARGET}, the lowest cross-scanner share (within "
            f"{SHARE_TIE} of it: fewest parts); if none reaches {FAR_TARGET}, the highest minimum AUROC"
            if with_shares else f"highest minimum AUROC over the far sets; within {TIE} of it, fewest parts")
    return {"train": {"n": train.n, "split": f"{csv.name} train", "sources": sources},
            "val": {"n": val.n, "name": val.name},
            "far_sets": {s.name: {"n": s.n, "description": s.description} for s in far},
            "rule": rule, "rows": rows, "chosen": chosen["candidate"],
            "cross_hospital": None if cross is None else {
                "target": cross_target, "chosen": cross["candidate"],
                "far_sets": [s.name for s in far if not s.report_only],
                "rule": (f"the highest minimum far share flagged at the cross-hospital threshold (at most "
                         f"{100 * cross_target:g} % of a held-out training hospital flagged); within {CROSS_TIE}: "
                         "fewest parts, then the higher minimum far AUROC; the non-breast clips not used")}}


# ------------------------------------------------------------------------------------------------------------
# 2. the report on the shipped file
# ------------------------------------------------------------------------------------------------------------
def timing(model: Path, iters: int = 300, threads: int = 1) -> dict[str, Any]:
    """p50/p90 (ms) of one batch-1 forward with ``logits`` + ``cam`` + ``ood_score`` and of the same file with
    the score removed (``logits`` + ``cam``), interleaved call by call; ORT settings as ``OnnxEngine``'s with
    ``threads`` intra-op threads (1: on a shared 2-core machine a second thread mostly waits for a busy core).
    The load average at the start is recorded: other jobs on the machine slow both columns."""
    import onnx
    import onnxruntime as ort

    from sonolens.models.ood_graph import remove_ood_score

    proto = onnx.load(str(model))
    bare = onnx.ModelProto()
    bare.CopyFrom(proto)
    remove_ood_score(bare)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    cpu = ["CPUExecutionProvider"]
    sessions = {"with_score": (ort.InferenceSession(proto.SerializeToString(), opts, providers=cpu),
                               ["logits", "cam", "ood_score"]),
                "without_score": (ort.InferenceSession(bare.SerializeToString(), opts, providers=cpu),
                                  ["logits", "cam"])}
    shape = [int(d.dim_value) or 1 for d in proto.graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    times: dict[str, list[float]] = {k: [] for k in sessions}
    load = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    for _ in range(20):
        for sess, outs in sessions.values():
            sess.run(outs, {"image": x})
    for _ in range(iters):
        for key, (sess, outs) in sessions.items():
            t = time.perf_counter()
            sess.run(outs, {"image": x})
            times[key].append((time.perf_counter() - t) * 1e3)
    res: dict[str, Any] = {k: {"p50_ms": float(np.median(v)), "p90_ms": float(np.quantile(v, 0.9))}
                           for k, v in times.items()}
    res.update({"iters": iters, "threads": threads or "ORT default", "batch": 1, "loadavg_1min": load,
                "added_p50_ms": res["with_score"]["p50_ms"] - res["without_score"]["p50_ms"],
                "cpu": platform.processor() or platform.machine()})
    return res


def report(model: Path, shared: Path, *, n_boot: int = 2000, seed: int = 0, threads: int = 1,
           timing_iters: int = 300, log=print) -> dict[str, Any]:
    """Measure the shipped file (its own ``ood_score`` output) on the report sets."""
    ext = ood.Extractor(model, ["logits:vector"], threads=threads)
    spec = ext.spec
    if not ext.has_score or not spec.ood:
        raise ConfigError(f"{model}: no 'ood_score' output or no spec.ood (fit one with 'sonolens fit-ood')")
    threshold = float(spec.ood["threshold"])
    t0 = time.perf_counter()
    sets = [ext.features(s) for s in ood.suite_sets(spec, shared, "report")]
    log(f"  scored {sum(s.n for s in sets)} images/frames in {time.perf_counter() - t0:.0f} s")
    test = next(s for s in sets if s.role == "in")
    assert test.ood is not None
    out: dict[str, Any] = {"threshold": threshold, "temperature": spec.temperature, "ood": spec.ood, "sets": {}}
    for s in sets:
        assert s.ood is not None
        groups = s.groups if s.clustered else None
        entry: dict[str, Any] = {"role": s.role, "description": s.description, "target": s.target,
                                 "n": s.n, "n_groups": len(set(s.groups)) if s.clustered else s.n,
                                 "flagged": flagged_share(s.ood, threshold, groups, n_boot, seed),
                                 "score_quantiles": {q: float(np.quantile(s.ood, q)) for q in (0.05, 0.5, 0.95)}}
        if s.role != "in":
            a, ci = auroc(test.ood, s.ood, out_groups=groups, n_boot=n_boot, seed=seed)
            entry["auroc_vs_test"], entry["auroc_ci95"] = a, ci
        if not s.clustered and s.role == "far" and len(set(s.groups)) < s.n:  # noise kinds
            g = np.asarray(s.groups)
            entry["per_kind"] = {k: float((s.ood[g == k] > threshold).mean()) for k in dict.fromkeys(s.groups)}
        y = [int(v) for v in s.labels if v is not None]
        if s.role in ("in", "report") and y and len(y) == s.n:
            entry["calibration"] = calibration_summary(s.logits, y, spec.temperature, n_boot=n_boot, seed=seed)
            ok = s.ood <= threshold
            pred = s.logits.argmax(axis=1) == np.asarray(y)
            entry["accuracy_unflagged"] = float(pred[ok].mean()) if ok.any() else None
            entry["accuracy_flagged"] = float(pred[~ok].mean()) if (~ok).any() else None
        out["sets"][s.name] = entry
        out["sets"][s.name]["_scores"] = s.ood.round(5).tolist()
    out["timing"] = timing(model, iters=timing_iters) if timing_iters > 0 else None
    return out


# ------------------------------------------------------------------------------------------------------------
# Writing
# ------------------------------------------------------------------------------------------------------------
def _ci(v: list[float] | None, pct: bool = False) -> str:
    if not v:
        return ""
    return f" [{100 * v[0]:.1f}, {100 * v[1]:.1f}]" if pct else f" [{v[0]:.3f}, {v[1]:.3f}]"


def _target_met(name: str, e: dict[str, Any]) -> str:
    t = e.get("target", "")
    if t.startswith("AUROC"):
        return "met" if e["auroc_vs_test"] >= 0.95 else "**missed**"
    if "%" in t:
        limit = float(t.split("<=")[1].split("%")[0]) / 100
        return "met" if e["flagged"]["share"] <= limit else "**missed**"
    return "—"


def markdown(results: dict[str, Any]) -> str:
    """``OUT.md``: the protocol, then per model its gate, method table, report on the shipped file, calibration and
    latency, then the two figures."""
    lines = _protocol_lines(results)
    for name, m in results["models"].items():
        lines += _model_lines(name, m)
    lines += [f"![reliability diagrams]({Path(results['reliability_png']).name})", "",
              f"![score distributions]({Path(results['scores_png']).name})", ""]
    return "\n".join(lines)


def _protocol_lines(results: dict[str, Any]) -> list[str]:
    return ["# Out-of-domain gate and calibration — measured", "",
            f"Made by `{results['command']}` ({results['date']}). Every number below is in "
            f"`{results['json']}`. Research use only.", "",
            "Protocol. Every score is fitted on the **training** rows of the model's gate split only: for a breast "
            "model BUSI + BUS-UCLM (`busi_uclm.csv`, two scanners, whatever the classifier was trained on), for "
            "the chest model Kermany. The method table scores each candidate by AUROC of that split's "
            "**validation** rows against far selection sets and, with two scanners, by its cross-scanner share "
            "(fitted on one scanner, the share of the other's train + val images flagged: the stand-in for an "
            "unseen hospital); the rule that picks the method (stated above each table) and the threshold rule "
            "(the 0.98 quantile of the validation scores) are fixed in code. The report below scores the shipped "
            "file's own `ood_score` output on the **test** split(s) and on report sets. Kept apart: validation vs "
            "test split, Kermany val vs test, BUSI train vs test (chest model), photograph crops vs whole "
            "photographs, noise seed 1 vs 2. **Not** kept apart: the lung and ocular clips (only seven exist) "
            "are in both, so their report AUROCs are optimistic by the selection among the candidates. The "
            "external breast set (BrEaST-Lesions-USG) is never used to fit or choose anything. AUROC CIs: "
            f"percentile bootstrap ({results['n_boot']} resamples; clips resampled as whole clips); shares: "
            "Wilson intervals (clips: clip bootstrap).", ""]


def _model_lines(name: str, m: dict[str, Any]) -> list[str]:
    """One model's section of ``OUT.md``."""
    rep, sel = m["report"], m.get("selection")
    lines = _gate_lines(name, rep)
    if sel:
        lines += _method_table_lines(sel, rep["ood"]) + _cross_hospital_lines(sel, rep["ood"])
    lines += _report_table_lines(rep) + _per_group_lines(rep) + _calibration_lines(rep)
    if rep.get("timing"):
        lines += _latency_lines(rep["timing"])
    lines.append("")
    return lines


def _gate_lines(name: str, rep: dict[str, Any]) -> list[str]:
    ood_spec = rep["ood"]
    return [f"## `{name}`", "",
            f"Gate in the file: `{ood_spec.get('candidate', ood_spec['method'])}`, threshold "
            f"{rep['threshold']:.4g} ({ood_spec.get('threshold_rule', '')}; "
            f"{100 * ood_spec.get('val_flagged', 0):.1f} % "
            f"of {ood_spec.get('n_val', '?')} val images above it), fitted on {ood_spec.get('fitted_on', '?')} "
            f"({ood_spec.get('n_train', '?')} images). Temperature {rep['temperature']:.3f} "
            f"(fitted on {ood_spec.get('temperature_fitted_on', '?')}).", ""]


def _method_table_lines(sel: dict[str, Any], ood_spec: dict[str, Any]) -> list[str]:
    """The method table (``method_table``'s rows), the chosen candidate in bold."""
    far = list(sel["far_sets"])
    srcs = sel["train"].get("sources", [])
    shares = len(srcs) > 1
    lines = [f"### Method table (validation: {sel['val']['name']}, {sel['val']['n']} images vs far sets; "
             f"fitted on {sel['train']['split']}, {sel['train']['n']} images)", "",
             f"AUROC, in-domain validation vs each far set. Rule: {sel['rule']}. "
             + (f"Cross-scanner share: the candidate fitted on one scanner's train rows ({' or '.join(srcs)}),"
                " thresholded at the 0.98 quantile of its val rows, and the share of the other scanner's "
                "train + val images it flags; mean of both directions (in brackets: fitted on "
                + " / fitted on ".join(srcs) + ")." if shares else ""),
             "", "| " + " | ".join(["candidate", *far, "min", *(["cross-scanner share"] if shares else [])])
             + " |", "|---|" + "---|" * (len(far) + 1 + int(shares))]
    lines += [_method_row(r, far, srcs if shares else None, r["candidate"] == sel["chosen"]) for r in sel["rows"]]
    return lines + ["", f"Chosen by the rule: `{sel['chosen']}`"
                    + ("" if sel["chosen"] == ood_spec.get("candidate") else
                       f" — **the file carries `{ood_spec.get('candidate')}`**") + ".", ""]


def _cross_hospital_lines(sel: dict[str, Any], ood_spec: dict[str, Any]) -> list[str]:
    """The candidates at the cross-hospital threshold (``select_cross_hospital``), the chosen one in bold."""
    ch = sel.get("cross_hospital")
    if not ch:
        return []
    far = ch["far_sets"]
    lines = [f"### At the cross-hospital threshold (at most {100 * ch['target']:g} % of a held-out training "
             "hospital flagged)", "",
             "Level: where the threshold sits on the validation scale (0 = median, 1 = the 0.98 quantile), the "
             f"highest of the two leave-one-hospital-out fits. Share of each far selection set flagged there. "
             f"Rule: {ch['rule']}.", "",
             "| " + " | ".join(["candidate", "level", *far, "min"]) + " |", "|---|" + "---|" * (len(far) + 2)]
    for r in sel["rows"]:
        if r.get("min_far_flagged_cross") is None:
            continue
        m = "**" if r["candidate"] == ch["chosen"] else ""
        lines.append(f"| {m}`{r['candidate']}`{m} | {max(r['cross_levels'].values()):.2f} | "
                     + " | ".join(f"{100 * r['far_flagged_cross'][f]:.1f} %" for f in far)
                     + f" | {m}{100 * r['min_far_flagged_cross']:.1f} %{m} |")
    carried = ood_spec.get("candidate") == ch["chosen"] and "cross_levels" in ood_spec
    return lines + ["", f"Chosen by the cross-hospital rule: `{ch['chosen']}`"
                    + ("" if carried else " — not the gate this file carries") + ".", ""]


def _method_row(r: dict[str, Any], far: list[str], srcs: list[str] | None, chosen: bool) -> str:
    """One candidate's row; the cross-scanner column only with ``srcs`` (the split's scanners)."""
    mark = "**" if chosen else ""
    by = r.get("cross_scanner_by_source") or {}
    cross = (f" {mark}{100 * r['cross_scanner']:.1f} %{mark} ("
             + " / ".join(f"{100 * by[k]:.0f}" for k in srcs if k in by) + ") |") if srcs is not None else ""
    return (f"| {mark}`{r['candidate']}`{mark} | " + " | ".join(f"{r['auroc'][f]:.3f}" for f in far)
            + f" | {mark}{r['min_far_auroc']:.3f}{mark} |" + cross)


def _report_table_lines(rep: dict[str, Any]) -> list[str]:
    """The shipped file on every report set: AUROC vs the test split, share flagged, target."""
    lines = ["### On the shipped file: in-domain test vs every set", "",
             "| set | role | n (clips) | AUROC vs test [95% CI] | flagged % [95% CI] | target | |",
             "|---|---|---|---|---|---|---|"]
    for sname, e in rep["sets"].items():
        auc = (f"{e['auroc_vs_test']:.3f}{_ci(e.get('auroc_ci95'))}" if "auroc_vs_test" in e else "—")
        fl = e["flagged"]
        n = f"{e['n']}" + (f" ({e['n_groups']})" if e["n_groups"] != e["n"] else "")
        lines.append(f"| {sname} | {e['role']} | {n} | {auc} | "
                     f"{100 * fl['share']:.1f}{_ci(fl['share_ci95'], True)} | {e['target'] or '—'} | "
                     f"{_target_met(sname, e)} |")
    return lines


def _per_group_lines(rep: dict[str, Any]) -> list[str]:
    lines = ["", "Per clip / per kind, share flagged:", ""]
    for sname, e in rep["sets"].items():
        groups = e["flagged"].get("per_group") or e.get("per_kind")
        if groups:
            items = [f"{k} {100 * (v['share'] if isinstance(v, dict) else v):.0f} %" for k, v in groups.items()]
            lines.append(f"- {sname}: " + ", ".join(items))
    return lines


def _calibration_lines(rep: dict[str, Any]) -> list[str]:
    """ECE and NLL before and after the file's temperature, accuracy by gate decision; nothing without labels."""
    cal = [(s, e) for s, e in rep["sets"].items() if "calibration" in e]
    if not cal:
        return []
    lines = ["", "### Calibration (15-bin ECE, 95 % bootstrap CI) and accuracy by gate decision", "",
             "| set | n | ECE T=1 | ECE T={:.3f} | NLL T=1 → T | accuracy unflagged / flagged |".format(
                 rep["temperature"]), "|---|---|---|---|---|---|"]
    for s, e in cal:
        c = e["calibration"]
        acc_u, acc_f = e.get("accuracy_unflagged"), e.get("accuracy_flagged")
        lines.append(f"| {s} | {c['n']} | {c['uncalibrated']['ece']:.3f}{_ci(c['uncalibrated']['ece_ci95'])} | "
                     f"{c['calibrated']['ece']:.3f}{_ci(c['calibrated']['ece_ci95'])} | "
                     f"{c['uncalibrated']['nll']:.3f} → {c['calibrated']['nll']:.3f} | "
                     f"{'—' if acc_u is None else f'{100 * acc_u:.1f} %'} / "
                     f"{'—' if acc_f is None else f'{100 * acc_f:.1f} %'} |")
    return lines


def _latency_lines(t: dict[str, Any]) -> list[str]:
    """``timing``'s p50 and p90 with and without the score, and the machine's load while it ran."""
    return ["", f"Latency (batch 1, {t['iters']} interleaved calls, ORT threads {t['threads']}, load average "
            f"{t.get('loadavg_1min')} on {os.cpu_count()} cores): forward "
            f"with CAM and score p50 **{t['with_score']['p50_ms']:.2f} ms** "
            f"(p90 {t['with_score']['p90_ms']:.2f}); "
            f"the same file without the score {t['without_score']['p50_ms']:.2f} ms "
            f"(p90 {t['without_score']['p90_ms']:.2f}); the score adds {t['added_p50_ms']:+.2f} ms p50 "
            f"(×{t['with_score']['p50_ms'] / t['without_score']['p50_ms']:.2f})."]


def scores_figure(results: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(results["models"].items())
    fig, axes = plt.subplots(len(models), 1, figsize=(9, 2.8 * len(models)), squeeze=False)
    for ax, (name, m) in zip(axes[:, 0], models):
        rep = m["report"]
        sets = list(rep["sets"].items())
        all_s = np.concatenate([np.asarray(e["_scores"]) for _, e in sets])
        lo, hi = np.quantile(all_s, 0.001), np.quantile(all_s, 0.999)
        shift = 1 - min(lo, 0)  # log axis: shift so every score is >= 1
        bins = np.geomspace(lo + shift, hi + shift, 60)
        for sname, e in sets:
            s = np.clip(np.asarray(e["_scores"]), lo, hi) + shift
            ax.hist(s, bins=bins, histtype="step", density=True, lw=1.8 if e["role"] == "in" else 1.0,
                    label=f"{sname} ({e['role']})")
        ax.axvline(rep["threshold"] + shift, color="k", ls="--", lw=1, label="threshold")
        ax.set_xscale("log")
        ax.set_title(f"{name}: ood_score (log scale, shifted by {shift:.3g})", fontsize=9)
        ax.set_yticks([])
        ax.legend(fontsize=6, ncol=2, loc="upper right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sonolens ood-eval",
        description="Measure a model file's out-of-domain score ('ood_score') and calibration: the method table on "
                    "validation data, then AUROC and share flagged on test / far / external sets with bootstrap "
                    "CIs, ECE before and after temperature scaling, and the latency of the score. Research use only.")
    p.add_argument("--model", action="append", required=True,
                   help="ONNX model with an ood_score output, or a bundled name (busi, busi-mnv3, busi-uclm, "
                        "chest-xray); "
                        "repeatable")
    p.add_argument("--shared", default=None, help="folder holding datasets/ and videos/ (default: ../shared)")
    p.add_argument("--out", default="benchmarks/ood_report", help="output prefix (default %(default)s)")
    p.add_argument("--no-select", action="store_true", help="skip the method table")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--timing-iters", type=int, default=300, help="timing loop length; 0 skips it")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads for scoring (default 1)")
    return p


def cli_main(argv: list[str]) -> int:
    import datetime

    args = _parser().parse_args(argv)
    shared = ood.shared_root(args.shared)
    if not (shared / "datasets").is_dir():
        raise ConfigError(f"no datasets under {shared} (pass --shared)")
    out = Path(args.out)
    results: dict[str, Any] = {"command": "sonolens ood-eval " + " ".join(argv),
                               "date": datetime.date.today().isoformat(), "json": str(out) + ".json",
                               "reliability_png": str(out) + "_reliability.png",
                               "scores_png": str(out) + "_scores.png", "n_boot": args.n_boot, "models": {}}
    for m in args.model:
        path = ood.resolve_model(m)
        print(f"{path.name}:", file=sys.stderr)
        entry: dict[str, Any] = {"path": str(path)}
        if not args.no_select:
            entry["selection"] = method_table(path, shared, threads=args.threads,
                                              log=lambda s: print(s, file=sys.stderr))
        entry["report"] = report(path, shared, n_boot=args.n_boot, seed=args.seed, threads=args.threads,
                                 timing_iters=args.timing_iters, log=lambda s: print(s, file=sys.stderr))
        results["models"][path.name] = entry
    panels = []
    for name, m in results["models"].items():
        for sname, e in m["report"]["sets"].items():
            if "calibration" in e:
                panels.append((f"{name}\n{sname}", e["calibration"]))
    if panels:
        reliability_diagram(panels, results["reliability_png"])
    scores_figure(results, Path(results["scores_png"]))
    text = markdown(results)
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(str(out) + ".md").write_text(text, encoding="utf-8")
    Path(str(out) + ".json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    print(text)
    print(f"wrote {out}.md, {out}.json, {results['reliability_png']}, {results['scores_png']}", file=sys.stderr)
    return 0
