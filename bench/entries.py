"""Reading the assembled report (plain data, exactly what ``benchmarks/bench.json`` holds): whether an entry was
measured under contention, its p50, and every timed entry with its verdict.

Shared by the steps that build on the report (``assemble``, ``targets``) and those that render it (``report``,
``plots``), so rendering needs nothing of the planning and running code.
"""

from __future__ import annotations

from typing import Any


def contended(entry: dict[str, Any] | None) -> bool:
    """Whether a report entry (a model row, a pipeline run, ...) was flagged as contended."""
    return bool(entry and (entry.get("contention") or {}).get("contended"))


def p50(entry: dict[str, Any] | None) -> float | None:
    """The p50 latency of a measured model row (None when it was not measured)."""
    if not entry or not entry.get("measured"):
        return None
    return entry["latency_ms"]["p50"]


def timed_entries(rep: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """``(what, entry)`` for every entry of the report that carries a contention verdict."""
    out: list[tuple[str, dict[str, Any]]] = []

    def add(what: str, entry: dict[str, Any] | None) -> None:
        if entry and entry.get("contention"):
            out.append((what, entry))

    for e in (rep.get("models") or {}).values():
        add(e["label"], e)
    gc = rep.get("gradcam") or {}
    add("pytorch-grad-cam, one class", gc.get("gradcam_top_class_ms"))
    add("pytorch-grad-cam, every class", gc.get("gradcam_all_classes_ms"))
    pipe = rep.get("pipeline") or {}
    key = pipe.get("key") or {}
    for k in ("max_rate_cam", "max_rate_no_cam", "realtime_cam", "realtime_no_cam", "naive_top", "naive_all"):
        add(f"key clip {key.get('clip')}: {k}", key.get(k))
    for table in ("samples", "shared"):
        for row in pipe.get(table) or []:
            for k, v in row.items():
                if isinstance(v, dict):
                    add(f"{table} {row['clip']}: {k}", v)
    sc = rep.get("scaling") or {}
    for row in sc.get("frame_size") or []:
        for k in ("max_rate_cam", "max_rate_no_model", "realtime_cam"):
            add(f"frame size {row['size']}: {k}", row.get(k))
    for row in sc.get("threads") or []:
        add(f"{row['threads']} ONNX Runtime thread(s)", row.get("max_rate_cam"))
    for row in sc.get("streams") or []:
        for k in ("max_rate_cam", "realtime_cam"):
            add(f"{row['streams']} stream(s): {k}", row.get(k))
    for row in (rep.get("multi_stream") or {}).get("rows") or []:
        add(f"{row['streams']} stream(s) in one process", row.get("one_process"))
        add(f"{row['streams']} stream(s) in separate processes", row.get("processes"))
    add("4K recording", rep.get("recording_4k"))
    add("soak", rep.get("soak"))
    for row in (rep.get("batch") or {}).get("rows") or []:
        add(f"archive on Dask: {row['label']}", row)
    return out


def contended_figures(rep: dict[str, Any]) -> list[dict[str, Any]]:
    """Every flagged entry of the report: ``{"what", "reasons", "context"}``, for its contention summary."""
    return [{"what": what, "reasons": e["contention"]["reasons"], "context": e["contention"].get("context") or ""}
            for what, e in timed_entries(rep) if e["contention"].get("contended")]
