"""``sonolens model-report``: the breast model's three-level evaluation — images, cine video, explanation — in one
command and one report (issue #21).

Each level is measured by the command that owns it, called here with an argument list (no metric is computed in
this module):

* ``images`` — ``sonolens external-eval``: BUSI test, the BUS-UCLM test patients of the union split, the Polish
  external set (BrEaST-Lesions-USG), with patient-bootstrap CIs → ``PREFIX_images.json/.md`` (+ ``.csv``, per image);
* ``video`` — ``sonolens cine-eval``, once per model, on ``--cine-root``: clip- and patient-level AUC of the mean
  P(malignant) over the frames the gate lets through, the share of frames flagged, top-class changes per second
  (with ``--decision``: of the shown class after the video-level decision) → ``PREFIX_video.json/.md``;
* ``explanation`` — ``sonolens cam-localise``: Grad-CAM mass inside the lesion masks of the Polish set and BUS-UCLM
  against chance → ``PREFIX_explanation.json/.md`` (figures and per-image CSV in ``PREFIX_explanation/``).

Then ``PREFIX.md`` and ``PREFIX.json``: a header (command line, date, models, the research-use notice), a per-model
summary table whose every figure is read from the JSON a level wrote (``FIGURES`` names the keys; a level not run
shows "—"), and each level's own tables. Research use only; the Polish set and the cine clips are external tests:
measured here, never used to train, select, threshold or calibrate.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import sys
import tempfile
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sonolens.pipeline.errors import ConfigError

LEVELS = ("images", "video", "explanation")
IMAGE_SETS = "breast_lesions_usg,bus_uclm,busi"
CAM_SETS = "breast_lesions_usg,bus_uclm"
NOTICE = ("Research use only — not for diagnosis. The Polish set (BrEaST-Lesions-USG) and the cine clips are "
          "external tests: measured, never used to train, select, threshold or calibrate.")
MISSING = "—"
NAME = "{name}"  # stands for the model's name in a key path
CHANGES = "{changes}"  # changes_per_s_smoothed with --decision (what the overlay shows), else changes_per_s_raw

# The summary's figures: (key, column, level, key path in that level's JSON, CI key path or None, format).
# ``fmt``: pct (×100, one decimal), auc (three decimals), rate (two decimals); "+chance" joins the previous column.
FIGURES: tuple[tuple[str, str, str, tuple[str, ...], tuple[str, ...] | None, str], ...] = (
    ("busi_accuracy_3class", "BUSI test 3-class acc. % [95% CI]", "images",
     ("models", NAME, "sets", "busi", "accuracy_3class"), ("models", NAME, "sets", "busi", "accuracy_3class_ci95"),
     "pct"),
    ("busi_auc", "BUSI test AUC", "images", ("models", NAME, "sets", "busi", "auc"), None, "auc"),
    ("bus_uclm_auc", "BUS-UCLM test AUC (union split)", "images", ("models", NAME, "sets", "bus_uclm", "auc"), None,
     "auc"),
    ("polish_auc", "Polish AUC [95% CI]", "images", ("models", NAME, "sets", "breast_lesions_usg", "auc"),
     ("models", NAME, "sets", "breast_lesions_usg", "auc_ci95"), "auc"),
    ("cine_patient_auc_gated", "cine patient AUC, gated frames [95% CI]", "video",
     ("models", NAME, "summary", "patient_auc_gated", "auc"), ("models", NAME, "summary", "patient_auc_gated", "ci"),
     "auc"),
    ("cine_flagged_frames", "cine frames flagged %", "video", ("models", NAME, "summary", "flagged_frames"), None,
     "pct"),
    ("cine_changes_per_s_median", "median shown-class changes/s", "video",
     ("models", NAME, "summary", CHANGES, "median"), None, "rate"),
    ("cam_mass_in_mask_polish", "CAM mass in lesion vs chance, Polish %", "explanation",
     ("sets", "breast_lesions_usg", "models", NAME, "mass_in_mask", "mean"),
     ("sets", "breast_lesions_usg", "models", NAME, "mass_in_mask", "ci95"), "pct"),
    ("cam_chance_polish", "", "explanation", ("sets", "breast_lesions_usg", "models", NAME, "mass_in_mask", "chance"),
     None, "pct+chance"),
)


# --------------------------------------------------------------------------------------------------------
# Inputs and outputs, checked before any work
# --------------------------------------------------------------------------------------------------------
def parse_levels(text: str) -> list[str]:
    """``images,video,explanation`` (any subset, any order) → the levels in their canonical order."""
    asked = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in asked if t not in LEVELS]
    if unknown or not asked:
        raise ConfigError(f"unknown level(s) {', '.join(unknown) or repr(text)} in --levels; the levels are "
                          f"{', '.join(LEVELS)}")
    return [lv for lv in LEVELS if lv in asked]


def shown_path(p: Path) -> Path:
    """``p`` as the report records it and hands it to the levels: relative to the working folder when it lies in it or
    beside it (``runs/x/student.onnx``, ``../shared/datasets``), so a committed report names no machine's folders;
    absolute otherwise."""
    try:
        rel = Path(os.path.relpath(p.resolve()))
    except ValueError:  # another drive (Windows)
        return p.resolve()
    return rel if rel.parts[:2].count("..") < 2 else p.resolve()


def parse_models(items: Sequence[str], levels: Sequence[str]) -> list[tuple[str, str]]:
    """``NAME=PATH`` items → ``(name, path)`` (``shown_path``); every file must exist, names must differ, and the
    video and explanation levels need ONNX files (the runtime's pipeline, the fused CAM output)."""
    from .config import resolve_path
    from .external_eval import named_path

    if not items:
        raise ConfigError("give at least one --model NAME=PATH")
    models = []
    for item in items:
        name, path = named_path(item)
        p = resolve_path(path)
        if not p.is_file():
            raise ConfigError(f"--model {item}: {path} does not exist")
        if p.suffix.lower() != ".onnx" and {"video", "explanation"} & set(levels):
            raise ConfigError(f"--model {item}: the video and explanation levels need an ONNX model file "
                              f"(export a checkpoint with 'sonolens export'), or --levels images")
        models.append((name, str(shown_path(p))))
    names = [n for n, _ in models]
    if len(set(names)) != len(names):
        raise ConfigError("two --model entries have the same name; use NAME=PATH with distinct names")
    return models


def output_paths(prefix: str) -> dict[str, Path]:
    """Every file the report writes, by role; the folder of ``prefix`` is created and probed for writing."""
    from sonolens.pipeline.outputs import check_writable

    if not prefix or prefix.endswith(("/", "\\")) or Path(prefix).name in ("", ".", ".."):
        raise ConfigError(f"--out {prefix!r} must be a file prefix (e.g. reports/breast), not a folder")
    p = Path(prefix)
    check_writable(p.with_name(p.name + ".json"), "report JSON")
    check_writable(p.with_name(p.name + ".md"), "report")
    out = {"json": ".json", "md": ".md", **{f"{lv}_{k}": f"_{lv}.{k}" for lv in LEVELS for k in ("json", "md")},
           "images_csv": "_images.csv", "explanation_dir": "_explanation"}
    paths = {k: p.with_name(p.name + suffix) for k, suffix in out.items()}
    if paths["explanation_dir"].exists() and not paths["explanation_dir"].is_dir():
        raise ConfigError(f"--out {prefix}: {paths['explanation_dir']} (the explanation's figures) is a file")
    return paths


def check_inputs(args: argparse.Namespace, levels: Sequence[str]) -> dict[str, Path | None]:
    """The datasets folder and split file (images, explanation) and the cine folder's clips.csv (video), resolved;
    a one-line ``ConfigError`` for any that is missing."""
    from .config import resolve_path

    found: dict[str, Path | None] = {"datasets_root": None, "split_file": None, "cine_root": None}
    if {"images", "explanation"} & set(levels):
        root = resolve_path(args.datasets_root)
        if not root.is_dir():
            raise ConfigError(f"--datasets-root {args.datasets_root}: no such folder")
        split = resolve_path(args.split_file)
        if not split.is_file():
            raise ConfigError(f"--split-file {args.split_file}: no such file")
        found.update(datasets_root=shown_path(root), split_file=shown_path(split))
    if "video" in levels:
        from .cine_eval import read_clips

        cine = resolve_path(args.cine_root)
        if not cine.is_dir():
            raise ConfigError(f"--cine-root {args.cine_root}: no such folder")
        read_clips(cine)  # clips.csv present, with its columns
        found["cine_root"] = shown_path(cine)
    return found


# --------------------------------------------------------------------------------------------------------
# The three levels, each by its own command
# --------------------------------------------------------------------------------------------------------
def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))  # the levels' JSON may hold NaN (a missing statistic)


def run_images(args: argparse.Namespace, models: Sequence[tuple[str, str]], inputs: dict[str, Path | None],
               out: dict[str, Path]) -> dict[str, Any]:
    """``sonolens external-eval`` on the three image sets; its JSON, Markdown and per-image CSV."""
    from . import external_eval

    argv = [*(a for n, p in models for a in ("--model", f"{n}={p}")), "--datasets-root", str(inputs["datasets_root"]),
            "--split-file", str(inputs["split_file"]), "--sets", IMAGE_SETS, "--roi", args.roi,
            "--n-boot", str(args.n_boot), "--seed", str(args.seed), "--json", str(out["images_json"]),
            "--md", str(out["images_md"]), "--csv", str(out["images_csv"])]
    external_eval.cli_main(argv)
    return {"command": "sonolens external-eval " + shlex.join(argv), "json": str(out["images_json"]),
            "md": str(out["images_md"]), "files": str(out["images_csv"]), "result": _read_json(out["images_json"])}


def run_video(args: argparse.Namespace, models: Sequence[tuple[str, str]], inputs: dict[str, Path | None],
              out: dict[str, Path]) -> dict[str, Any]:
    """``sonolens cine-eval`` once per model (it takes one); the models' JSON and Markdown joined into one of each."""
    from . import cine_eval

    result: dict[str, Any] = {"cine_root": str(inputs["cine_root"]), "decision_s": args.decision, "models": {}}
    texts, commands = [], []
    with tempfile.TemporaryDirectory(prefix="model-report-") as tmp:
        for i, (name, path) in enumerate(models):
            js, md = Path(tmp) / f"{i}.json", Path(tmp) / f"{i}.md"
            argv = ["--model", path, "--cine", str(inputs["cine_root"]), "--n-boot", str(args.n_boot)]
            if args.decision:
                argv += ["--decision", str(args.decision)]
            if args.clip_limit is not None:
                argv += ["--limit", str(args.clip_limit)]
            commands.append("sonolens cine-eval " + shlex.join(argv))  # less the temporary outputs
            cine_eval.cli_main([*argv, "--json", str(js), "--md", str(md)])
            result["models"][name] = _read_json(js)
            text = md.read_text(encoding="utf-8")
            texts.append(text.replace(f"### {path}", f"### {name} (`{Path(path).name}`)", 1))
    out["video_json"].write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    out["video_md"].write_text("\n".join(texts), encoding="utf-8")
    return {"command": commands, "json": str(out["video_json"]), "md": str(out["video_md"]), "result": result}


def run_explanation(args: argparse.Namespace, models: Sequence[tuple[str, str]], inputs: dict[str, Path | None],
                    out: dict[str, Path]) -> dict[str, Any]:
    """``sonolens cam-localise`` on the Polish set and the BUS-UCLM test patients; its JSON and Markdown copied to
    ``PREFIX_explanation.json/.md`` (figures and per-image CSV stay in ``PREFIX_explanation/``)."""
    from . import cam_localise

    folder = out["explanation_dir"]
    argv = [*(a for n, p in models for a in ("--model", f"{n}={p}")), "--datasets-root", str(inputs["datasets_root"]),
            "--split-file", str(inputs["split_file"]), "--sets", CAM_SETS, "--cam-class", args.cam_class,
            "--roi", args.roi, "--n-boot", str(args.n_boot), "--seed", str(args.seed), "--out-dir", str(folder)]
    if args.cam_limit is not None:
        argv += ["--limit", str(args.cam_limit)]
    cam_localise.cli_main(argv)
    shutil.copyfile(folder / "cam_localisation.json", out["explanation_json"])
    shutil.copyfile(folder / "cam_localisation.md", out["explanation_md"])
    return {"command": "sonolens cam-localise " + shlex.join(argv), "json": str(out["explanation_json"]),
            "md": str(out["explanation_md"]), "files": str(folder), "result": _read_json(out["explanation_json"])}


RUNNERS = {"images": run_images, "video": run_video, "explanation": run_explanation}


# --------------------------------------------------------------------------------------------------------
# The summary: every figure read from a level's JSON
# --------------------------------------------------------------------------------------------------------
def _lookup(doc: Any, path: Sequence[str]) -> Any:
    for key in path:
        if not isinstance(doc, dict) or key not in doc:
            return None
        doc = doc[key]
    return doc


def _finite(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def summary_figures(name: str, levels: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per figure of ``FIGURES``: its value and CI (None where the level was not run, the key is absent or the value
    is not a finite number), the level it comes from and the key path read."""
    video = _lookup(levels.get("video"), ("result", "models", name, "summary")) or {}
    changes = "changes_per_s_smoothed" if "changes_per_s_smoothed" in video else "changes_per_s_raw"
    def concrete(p: Sequence[str]) -> list[str]:
        return [name if k == NAME else changes if k == CHANGES else k for k in p]

    out = {}
    for key, _, level, path, ci_path, _ in FIGURES:
        doc = (levels.get(level) or {}).get("result")
        ci = _lookup(doc, concrete(ci_path)) if ci_path else None
        out[key] = {"value": _finite(_lookup(doc, concrete(path))),
                    "ci95": [float(c) for c in ci] if isinstance(ci, list) and len(ci) == 2 else None,
                    "level": level, "key": ".".join(concrete(path)),
                    "ci_key": ".".join(concrete(ci_path)) if ci_path else None}
    return out


def format_figure(fig: dict[str, Any], fmt: str) -> str:
    v, ci = fig["value"], fig["ci95"]
    if v is None:
        return MISSING
    scale, digits = {"pct": (100.0, 1), "auc": (1.0, 3), "rate": (1.0, 2)}[fmt.split("+")[0]]
    text = f"{scale * v:.{digits}f}"
    return text + (f" [{scale * ci[0]:.{digits}f}, {scale * ci[1]:.{digits}f}]" if ci else "")


def summary_table(summary: dict[str, dict[str, dict[str, Any]]]) -> str:
    """One row per model; "+chance" figures join the column before them ("41.2 [35.0, 47.1] vs 12.3")."""
    heads = ["model"] + [title for _, title, *_ in FIGURES if title]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for name, figs in summary.items():
        cells = [name]
        for key, _title, _, _, _, fmt in FIGURES:
            text = format_figure(figs[key], fmt)
            if fmt.endswith("+chance"):
                cells[-1] += "" if text == MISSING and cells[-1] == MISSING else f" vs {text}"
            else:
                cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------------
# The combined report
# --------------------------------------------------------------------------------------------------------
SECTION_TITLES = {"images": "Images: BUSI test, BUS-UCLM test (union split), Polish external set",
                  "video": "Video: breast cine clips (external)",
                  "explanation": "Explanation: Grad-CAM mass inside the lesion masks (BUS-UCLM, Polish set)"}


def markdown_report(doc: dict[str, Any], out: dict[str, Path]) -> str:
    lines = ["# Breast model report: images, cine video, explanation", "", f"**{NOTICE}**", "",
             f"- command: `{doc['command']}`", f"- date: {doc['date']} (sonolens {doc['sonolens_version']})",
             "- models: " + ", ".join(f"{n} (`{p}`)" for n, p in doc["models"].items()),
             f"- levels: {', '.join(doc['levels'])}; bootstrap: {doc['settings']['n_boot']} resamples of patients, "
             f"seed {doc['settings']['seed']}", "", "## Summary", "", summary_table(doc["summary"]),
             "Each figure is read from the level's JSON (key paths in the combined JSON's `summary`); "
             f"{MISSING} = level not run or figure absent. Cine: gated = the frames the out-of-domain gate lets "
             f"through; changes/s: {doc['summary_changes_note']}.", ""]
    for level in LEVELS:
        lines += [f"## {SECTION_TITLES[level]}", ""]
        entry = doc.get(level)
        if entry is None:
            lines += ["Not run (--levels).", ""]
            continue
        commands = entry["command"] if isinstance(entry["command"], list) else [entry["command"]]
        lines += [f"Measured by: `{c}`" for c in commands]
        files = [str(out[level + "_json"]), str(out[level + "_md"]), *([entry["files"]] if "files" in entry else [])]
        lines += ["", "Files: " + ", ".join(f"`{f}`" for f in files), "",
                  Path(entry["md"]).read_text(encoding="utf-8").rstrip(), ""]
    return "\n".join(lines) + "\n"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sonolens model-report",
        description="The breast model's three-level evaluation in one command and one report: images "
                    "(external-eval), cine video (cine-eval), explanation (cam-localise). Writes PREFIX_LEVEL.json/.md "
                    "per level and PREFIX.md + PREFIX.json with a per-model summary. Research use only.")
    p.add_argument("--model", action="append", default=[], metavar="NAME=PATH",
                   help="an ONNX model file (a checkpoint for --levels images only); repeatable")
    p.add_argument("--out", required=True, metavar="PREFIX", help="output prefix, e.g. reports/breast")
    p.add_argument("--levels", default=",".join(LEVELS), help=f"comma-separated subset of {','.join(LEVELS)}")
    p.add_argument("--datasets-root", default="../shared/datasets", help="folder holding the datasets")
    p.add_argument("--split-file", default="training/split_csv/busi_uclm.csv",
                   help="the union split: its test rows are the BUSI / BUS-UCLM test sets, its val rows set the "
                        "validation threshold")
    p.add_argument("--cine-root", default="../shared/videos/breast_cine", help="folder with clips.csv")
    p.add_argument("--decision", type=float, default=None, metavar="SECONDS",
                   help="also measure the cine clips with the video-level decision (the run's --decision); the "
                        "summary's changes/s are then the shown class's")
    p.add_argument("--clip-limit", type=int, default=None, metavar="N", help="only the first N cine clips")
    p.add_argument("--cam-limit", type=int, default=None, metavar="N",
                   help="only the first N images of each explanation set")
    p.add_argument("--cam-class", choices=("true", "predicted"), default="true")
    p.add_argument("--roi", choices=("none", "auto"), default="none")
    p.add_argument("--n-boot", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    return p


def cli_main(argv: list[str]) -> int:
    from sonolens import __version__
    from sonolens.pipeline.outputs import refuse_inputs_as_outputs, strict_json, write_text_atomic

    args = _parser().parse_args(argv)
    levels = parse_levels(args.levels)
    models = parse_models(args.model, levels)
    if args.decision is not None and not (math.isfinite(args.decision) and args.decision >= 0):
        raise ConfigError(f"--decision must be a time constant in seconds >= 0, got {args.decision}")
    out = output_paths(args.out)
    inputs = check_inputs(args, levels)
    refuse_inputs_as_outputs({f"{k} file": v for k, v in out.items()},
                             {**{f"model {n}": p for n, p in models}, "split file": inputs["split_file"]})
    doc: dict[str, Any] = {
        "command": "sonolens model-report " + shlex.join(argv),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "sonolens_version": __version__,
        "notice": NOTICE, "models": dict(models), "levels": levels,
        "settings": {"datasets_root": str(inputs["datasets_root"] or ""), "split_file": str(inputs["split_file"] or ""),
                     "cine_root": str(inputs["cine_root"] or ""), "decision_s": args.decision, "roi": args.roi,
                     "cam_class": args.cam_class, "n_boot": args.n_boot, "seed": args.seed,
                     "clip_limit": args.clip_limit, "cam_limit": args.cam_limit}}
    for level in LEVELS:
        doc[level] = RUNNERS[level](args, models, inputs, out) if level in levels else None
    doc["summary"] = {name: summary_figures(name, doc) for name, _ in models}
    doc["summary_changes_note"] = (f"of the shown class after the video-level decision ({args.decision:g} s)"
                                   if args.decision else "of the raw top class over the gated frames (no smoothing)")
    text = markdown_report(doc, out)
    write_text_atomic(out["json"], strict_json(doc, indent=1) + "\n", "report JSON")
    write_text_atomic(out["md"], text, "report")
    print(summary_table(doc["summary"]), end="")
    print(f"report: {out['md']} and {out['json']}; per level: "
          + ", ".join(str(out[f"{lv}_json"]) for lv in levels), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(sys.argv[1:]))
