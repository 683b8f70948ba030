"""Step 2 of ``sonolens bench``: the inputs a run measures, found or made.

``resolve_inputs`` finds the student files (bundled, given, else a random-init export and its INT8 quantised in a
``prepare_student`` subprocess through ``runner``), the second student's files, the sample clips, ../shared/videos
and a teacher checkpoint; ``make_moving_clip``, ``make_stream_clips`` (a copy of the moving sweep per stream) and
``make_size_clips`` render and re-encode the clips some sections need into the run's temp dir, and
``make_batch_archive`` sets up the batch section's archive. Each finding the report should mention becomes a note of
the ``Inputs``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from sonolens.pipeline.errors import ConfigError

from .plan import (
    BATCH_MODULES,
    BREAST_CINE,
    BREAST_CINE_ROWS,
    EXTRA_STUDENTS,
    REPO,
    SONOSITE,
    Inputs,
    Plan,
    display_path,
    extra_key,
)
from .runner import Say, run_child


def _shared_dir(arg: str | None) -> Path | None:
    if arg:
        return Path(arg)
    base = Path(os.environ.get("SONOLENS_SHARED", REPO.parent / "shared"))
    return base / "videos"


def find_teacher_checkpoint(arg: str | None) -> Path | None:
    if arg:
        p = Path(arg)
        if not p.is_file():
            raise ConfigError(f"--teacher-checkpoint {arg!r} does not exist")
        return p
    # The teacher of the bundled BUSI student (the breast paper's comparison); any other teacher run only as a
    # fallback, newest first.
    preferred = REPO / "runs" / "busi_teacher_offline" / "best.pt"
    if preferred.is_file():
        return preferred
    found = sorted((REPO / "runs").glob("busi*teacher*/best.pt"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def _model_spec(path: Path) -> Any:
    """The ``ModelSpec`` of an ONNX file, or None when it cannot be read (only informational here)."""
    try:
        import onnxruntime as ort

        from sonolens.pipeline.modelfile import META_KEY, ModelSpec

        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return ModelSpec.from_json(sess.get_modelmeta().custom_metadata_map[META_KEY])
    except Exception:  # noqa: BLE001 - only informational
        return None


def _model_trained(path: Path) -> bool | None:
    spec = _model_spec(path)
    return None if spec is None else bool(spec.trained)


def resolve_inputs(args: argparse.Namespace, plan: Plan, workdir: Path, say: Say,
                   sections: set[str] | None = None) -> Inputs:
    """The run's ``Inputs`` from the command line: student files (a missing one made in a subprocess first), clips,
    ../shared/videos, teacher checkpoint. A given file that does not exist is a ``ConfigError``. The second
    student's files are found or made only when the ``models`` section is measured (``sections``; None: all)."""
    notes: list[str] = []
    prep: dict[str, Any] = {}
    student, source = _student_file(args, workdir, prep, notes)
    int8, int8_source = _int8_file(args, student, source, workdir, prep)
    extra = _extra_students(workdir, prep) if sections is None or "models" in sections else {}
    if prep:
        _prepare_students(prep, say)
    samples, standin = _samples(args, plan, notes)
    shared, vids, key = _shared_videos(args, plan, notes)
    return Inputs(student=student, student_source=source,
                  student_trained=_model_trained(student), int8=int8, int8_source=int8_source,
                  teacher_checkpoint=find_teacher_checkpoint(args.teacher_checkpoint), samples=samples,
                  shared_dir=shared if shared is not None and shared.is_dir() else None, shared_videos=vids,
                  key_clip=key, standin_clip=standin, notes=notes, extra=extra)


def _student_file(args: argparse.Namespace, workdir: Path, prep: dict[str, Any], notes: list[str]
                  ) -> tuple[Path, str]:
    """The student file and where it comes from: ``--student``, the bundled one, else a random-init export
    (asked of ``prepare_student`` through ``prep``)."""
    from sonolens.pipeline.engines import bundled_model_path

    if args.student:
        student = Path(args.student).resolve()  # the measurements run in their own working folders
        if not student.is_file():
            raise ConfigError(f"--student {args.student!r} does not exist")
        return student, "given"
    bundled = bundled_model_path("busi-mnv3")  # the paper's student, whose ratios to the teachers the report gives
    if bundled is not None:
        return bundled, "bundled"
    student = workdir / "random_student.onnx"
    prep["onnx_out"] = str(student)
    notes.append("No bundled models/weights/busi_student.onnx: the student is a random-init export "
                 "(same architecture and graph, so the same speed; its predictions mean nothing).")
    return student, "random-init export"


def _int8_file(args: argparse.Namespace, student: Path, source: str, workdir: Path, prep: dict[str, Any]
               ) -> tuple[Path, str]:
    """The INT8 student and where it comes from: ``--student-int8``, the student's ``_int8`` sibling, else quantised
    on the fly (asked of ``prepare_student`` through ``prep``)."""
    if args.student_int8:
        int8 = Path(args.student_int8).resolve()
        if not int8.is_file():
            raise ConfigError(f"--student-int8 {args.student_int8!r} does not exist")
        return int8, "given"
    sibling = student.with_name(student.stem + "_int8.onnx")
    if sibling.is_file():
        return sibling, "bundled" if source == "bundled" else "sibling file"
    int8 = workdir / "student_int8.onnx"
    prep["int8_src"], prep["int8_out"] = str(student), str(int8)
    return int8, "quantised on the fly (synthetic calibration)"


def _prepare_students(prep: dict[str, Any], say: Say) -> None:
    """Make the student files ``prep`` asks for, in a ``prepare_student`` subprocess (it needs torch)."""
    say("preparing the student: " + ", ".join(k for k in ("onnx_out", "int8_out", "extra") if k in prep))
    ans = run_child([{"task": "prepare_student", "args": prep}])
    res = ans["results"][0]
    if not res.get("ok"):
        raise ConfigError(f"could not prepare the student model: {res.get('error')}")


def _samples(args: argparse.Namespace, plan: Plan, notes: list[str]) -> tuple[list[Path], Path | None]:
    """The sample clips of the table (at most ``plan.sample_limit``) and the stand-in clip (the bundled sweep, else
    the first sample) for when ../shared/videos is absent."""
    samples_dir = Path(args.samples) if args.samples else REPO / "assets" / "sample_videos"
    samples = sorted(samples_dir.glob("*.mp4")) if samples_dir.is_dir() else []
    if not samples:
        notes.append(f"No bundled sample clips under {display_path(samples_dir)}: that table is empty.")
    standin = next((p for p in samples if p.name == "sweep.mp4"), samples[0] if samples else None)
    if plan.sample_limit is not None:
        samples = samples[: plan.sample_limit]
    return samples, standin


def _shared_videos(args: argparse.Namespace, plan: Plan, notes: list[str]
                   ) -> tuple[Path | None, list[Path], Path | None]:
    """The ../shared/videos folder, the clips of its table and the SonoSite key clip (None when absent)."""
    shared = _shared_dir(args.shared_videos)
    if shared is not None and shared.is_dir():
        vids = sorted(shared.glob("*.mp4")) + sorted(shared.glob("breast_cine/*/*.mp4"))[:BREAST_CINE_ROWS]
        key = shared / SONOSITE if (shared / SONOSITE).is_file() else None
    else:
        vids, key = [], None
        notes.append(f"{display_path(shared)} is absent: the ../shared/videos rows and the SonoSite targets are "
                     "skipped; "
                     "scaling runs use the bundled sweep sample instead.")
    if vids and key is None:
        notes.append(f"{SONOSITE} not found in {display_path(shared)}: the SonoSite targets are not measured.")
    if not plan.shared_all:
        vids = [v for v in vids if v == key]
    return shared, vids, key


def _extra_students(workdir: Path, prep: dict[str, Any]) -> dict[str, tuple[Path, str]]:
    """The files of ``EXTRA_STUDENTS``' rows: a bundled file of that architecture and input size (and its
    ``_int8`` sibling) when there is one, else random-init exports that ``prepare_student`` writes (``prep``)."""
    out: dict[str, tuple[Path, str]] = {}
    todo = []
    bundled = _bundled_by_arch_size()
    for arch, size in EXTRA_STUDENTS:
        fp32 = bundled.get((arch, size))
        int8 = fp32.with_name(fp32.stem + "_int8.onnx") if fp32 is not None else None
        if fp32 is not None and int8 is not None and int8.is_file():
            out[extra_key(arch, size, False)] = (fp32, "bundled")
            out[extra_key(arch, size, True)] = (int8, "bundled")
            continue
        f, q = workdir / f"{arch}_{size}.onnx", workdir / f"{arch}_{size}_int8.onnx"
        todo.append({"arch": arch, "size": size, "out": str(f), "int8_out": str(q)})
        out[extra_key(arch, size, False)] = (f, "random-init export (no gate)")
        out[extra_key(arch, size, True)] = (q, "random-init export, quantised on the fly (synthetic calibration)")
    if todo:
        prep["extra"] = todo
    return out


def _bundled_by_arch_size() -> dict[tuple[str, int], Path]:
    """Bundled fp32 model files by (architecture, input height), read from their metadata."""
    found: dict[tuple[str, int], Path] = {}
    for path in sorted((REPO / "models" / "weights").glob("*.onnx")):
        spec = None if path.stem.endswith("_int8") else _model_spec(path)
        if spec is not None:
            found.setdefault((spec.arch, int(spec.input_size[0])), path)
    return found


# --------------------------------------------------------------------------------------------------------
# Clips a run makes in its temp dir
# --------------------------------------------------------------------------------------------------------
def make_size_clips(base: Path, sizes: tuple[tuple[int, int], ...], n_frames: int, workdir: Path
                    ) -> dict[str, Path]:
    """Re-encode the first ``n_frames`` of ``base`` at each size into ``workdir`` (a temp dir, never the repo)."""
    import cv2

    from sonolens.pipeline.sources import open_source
    from sonolens.pipeline.videoio import VideoWriter

    src = open_source(str(base))
    info = src.open()
    frames = []
    try:
        for raw in src.frames():
            frames.append(raw.pixels)
            if len(frames) >= n_frames:
                break
    finally:
        src.close()
    out = {}
    for w, h in sizes:
        path = workdir / f"size_{w}x{h}.mp4"
        with VideoWriter(path, info.fps or 25.0, size=(w, h)) as writer:
            for px in frames:
                rgb = px if px.ndim == 3 else cv2.cvtColor(px, cv2.COLOR_GRAY2RGB)
                writer.write(cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA))
        out[f"{w}x{h}"] = path
    return out


def make_moving_clip(plan: Plan, workdir: Path, say: Say, size: tuple[int, int] | None = None,
                     seconds: float | None = None) -> Path:
    """The headline's moving footage: ``sonolens simulate sweep`` (seed 0, 30 fps, H.264) at ``plan.moving_size``
    for ``plan.moving_seconds`` (or the ``size`` and ``seconds`` given), rendered into ``workdir``: every frame
    differs (the probe moves over speckle), so decoding costs what a live scan costs — unlike the SonoSite clip, a
    still. A clip of that size and length already rendered into ``workdir`` is reused."""
    from sonolens.simulator.cli import write_clip

    size, seconds = size or plan.moving_size, plan.moving_seconds if seconds is None else seconds
    w, h = size
    headline = (size, seconds) == (plan.moving_size, plan.moving_seconds)
    path = workdir / (f"moving_sweep_{w}x{h}.mp4" if headline else f"moving_sweep_{w}x{h}_{seconds:g}s.mp4")
    if path.is_file():
        return path
    say(f"rendering {seconds:g} s of a moving {w}×{h} simulated sweep "
        f"({'the headline' if headline else 'the streams section'}'s footage)")
    write_clip("sweep", path, seconds, seed=0, fps=30.0, size=(w, h), progress=False)
    return path


def make_stream_clips(plan: Plan, workdir: Path, say: Say) -> list[Path]:
    """The streams section's footage: the moving sweep at ``plan.multi_size`` for ``plan.multi_seconds``
    (``make_moving_clip``), copied once per stream of the largest count (``stream_1_….mp4``…): stream k of every
    run reads its own file, so no two decoders share a file (or its page cache)."""
    import shutil

    base = make_moving_clip(plan, workdir, say, size=plan.multi_size, seconds=plan.multi_seconds)
    n = max(plan.multi_counts, default=0)
    say(f"copying {base.name} for {n} stream(s)")
    clips = [workdir / f"stream_{k}_{base.name}" for k in range(1, n + 1)]
    for clip in clips:
        shutil.copyfile(base, clip)
    return clips


# --------------------------------------------------------------------------------------------------------
# The batch section's archive
# --------------------------------------------------------------------------------------------------------
def missing_modules(names: tuple[str, ...] = BATCH_MODULES) -> list[str]:
    """Which of ``names`` cannot be imported here (found, not imported: this process stays free of Dask)."""
    import importlib.util

    missing = []
    for name in names:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    return missing


def make_batch_archive(inp: Inputs, plan: Plan, workdir: Path, say: Say) -> None:
    """The batch section's archive, set on ``inp`` (``batch_root``, ``batch_selection``, ``batch_full``), or why
    there is none (``batch_skipped``, also a note): the 'batch' extra missing, or ../shared/videos/breast_cine absent.
    With ``plan.batch_rendered``: that many simulated sweeps (``sonolens simulate sweep``, seeds 0, 1, …) rendered
    into ``workdir``; else ../shared/videos/breast_cine itself, or a folder of links to its first ``plan.batch_limit``
    clips in sorted path order."""
    missing = missing_modules()
    if missing:
        inp.batch_skipped = (f"the 'batch' extra is not installed (no module {', '.join(missing)}): install it with "
                             "pip install 'sonolens[batch]'")
    elif plan.batch_rendered > 0:
        inp.batch_root, inp.batch_selection = _rendered_archive(plan, workdir, say)
    else:
        cine = inp.shared_dir / BREAST_CINE if inp.shared_dir is not None else None
        clips = sorted(cine.rglob("*.mp4"), key=lambda c: c.relative_to(cine).as_posix()) if cine and cine.is_dir() \
            else []
        if cine is None or not clips:
            where = display_path(cine) if cine is not None else f"../shared/videos/{BREAST_CINE}"
            inp.batch_skipped = f"{where} is absent (or holds no .mp4 clip)"
        elif plan.batch_limit is None or plan.batch_limit >= len(clips):
            inp.batch_root, inp.batch_full = cine, True
            inp.batch_selection = f"every clip of {display_path(cine)} ({len(clips)} .mp4 files)"
        else:
            inp.batch_root, inp.batch_selection = _linked_subset(cine, clips[:plan.batch_limit], len(clips), workdir)
    if inp.batch_skipped:
        inp.notes.append(f"The batch section is skipped: {inp.batch_skipped}.")
    elif inp.batch_root is not None:
        say(f"batch archive: {inp.batch_selection}")


def _rendered_archive(plan: Plan, workdir: Path, say: Say) -> tuple[Path, str]:
    from sonolens.simulator.cli import write_clip

    w, h = plan.batch_rendered_size
    root = workdir / "batch_archive"
    root.mkdir(exist_ok=True)
    say(f"rendering {plan.batch_rendered} simulated sweeps of {plan.batch_rendered_seconds:g} s ({w}×{h}) for the "
        f"batch section")
    for k in range(plan.batch_rendered):
        write_clip("sweep", root / f"sweep_{k}.mp4", plan.batch_rendered_seconds, seed=k, fps=30.0, size=(w, h),
                   progress=False)
    return root, (f"{plan.batch_rendered} simulated sweeps rendered into a temp folder (sonolens simulate sweep --size "
                  f"{w}x{h} --fps 30 --seconds {plan.batch_rendered_seconds:g} --seed 0…{plan.batch_rendered - 1})")


def _linked_subset(cine: Path, chosen: list[Path], total: int, workdir: Path) -> tuple[Path, str]:
    """A temp folder holding ``chosen`` (links, else copies) under their paths relative to ``cine``, and what it
    holds."""
    import shutil
    from collections import Counter

    root = workdir / "batch_archive"
    for clip in chosen:
        dest = root / clip.relative_to(cine)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            dest.symlink_to(clip.resolve())
        except OSError:
            shutil.copyfile(clip, dest)
    folders = Counter(c.relative_to(cine).parts[0] if len(c.relative_to(cine).parts) > 1 else "." for c in chosen)
    return root, (f"the first {len(chosen)} of the {total} clips of {display_path(cine)} in sorted path order ("
                  + ", ".join(f"{n} in {name}/" for name, n in sorted(folders.items()))
                  + "), linked into a temp folder")
