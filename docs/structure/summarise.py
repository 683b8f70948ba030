"""The before/after table of ``before_after.sh``: each figure of the runs ``DIR/{pre26,post26}-{1,2}``, per
round, and the verdict "within noise" when the after–before difference of the round means is smaller than the
spread between the two rounds of the same commit (the larger of the two spreads)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

FIGURES = [
    ("student ONNX fp32 forward p50 (ms)", ("models", "student_onnx_fp32", "latency_ms", "p50"), "low"),
    ("student ONNX fp32 + fused CAM p50 (ms)", ("models", "student_onnx_fp32_cam", "latency_ms", "p50"), "low"),
    ("student ONNX INT8 + fused CAM p50 (ms)", ("models", "student_onnx_int8_cam", "latency_ms", "p50"), "low"),
    ("student ONNX fp32 throughput (images/s)", ("models", "student_onnx_fp32", "throughput_ips"), "high"),
    ("pytorch-grad-cam, top class p50 (ms)", ("gradcam", "gradcam_top_class_ms", "p50"), "low"),
    ("pipeline max-rate with CAM (frames/s)", ("pipeline", "key", "max_rate_cam", "fps_processed"), "high"),
    ("pipeline max-rate, capture→result p99 (ms)",
     ("pipeline", "key", "max_rate_cam", "capture_to_result_ms", "p99"), "low"),
    ("pipeline preprocess p50 (ms)", ("pipeline", "key", "max_rate_cam", "stage_p50_ms", "preprocess"), "low"),
    ("pipeline inference p50 (ms)", ("pipeline", "key", "max_rate_cam", "stage_p50_ms", "inference"), "low"),
]


def pick(d: dict, path: tuple[str, ...]) -> float | None:
    for k in path:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return float(d) if isinstance(d, (int, float)) else None


def main(root: Path) -> str:
    runs = {v: [json.loads((root / f"{v}-{r}" / "benchmarks" / "bench.json").read_text()) for r in (1, 2)]
            for v in ("pre26", "post26")}
    lines = ["| figure | before (round 1, 2) | after (round 1, 2) | after − before | verdict |",
             "|---|---|---|---|---|"]
    for label, path, better in FIGURES:
        pre = [pick(d, path) for d in runs["pre26"]]
        post = [pick(d, path) for d in runs["post26"]]
        if None in pre or None in post:
            lines.append(f"| {label} | — | — | — | not measured |")
            continue
        diff = sum(post) / 2 - sum(pre) / 2  # type: ignore[operator]
        noise = max(abs(pre[0] - pre[1]), abs(post[0] - post[1]))  # type: ignore[operator]
        worse = diff > 0 if better == "low" else diff < 0
        verdict = "within noise" if abs(diff) <= noise else ("slower" if worse else "faster")
        lines.append(f"| {label} | {pre[0]:.3g}, {pre[1]:.3g} | {post[0]:.3g}, {post[1]:.3g} | {diff:+.3g} "
                     f"(round spread {noise:.3g}) | {verdict} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(main(Path(sys.argv[1])), end="")
