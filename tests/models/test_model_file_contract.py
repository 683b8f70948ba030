"""A model file whose metadata holds non-finite or out-of-range numbers is refused when read, in one line naming the
field (at c28fbd5 ``ood.threshold: NaN`` showed 60 of 60 out-of-domain frames as "benign", exit 0, and ``std: NaN``
made every frame ``no_image``); the run's JSON report is strict JSON."""

from __future__ import annotations

import json
import subprocess
import sys

import onnx
import pytest
from conftest import NEUTRAL_CWD, REPO

from sonolens.pipeline.modelfile import META_KEY

SAMPLE = REPO / "assets" / "sample_videos" / "benign.mp4"


def _with_meta(src, dst, **changes):
    proto = onnx.load(str(src))
    entry = next(p for p in proto.metadata_props if p.key == META_KEY)
    meta = json.loads(entry.value)
    for key, value in changes.items():
        if key.startswith("ood."):
            meta.setdefault("ood", {"method": "msp"})[key[4:]] = value
        else:
            meta[key] = value
    entry.value = json.dumps(meta)  # Python writes NaN / Infinity literals, as a broken exporter could
    onnx.save(proto, str(dst))
    return dst


@pytest.mark.parametrize("changes, field", [({"ood.threshold": float("nan")}, "ood.threshold"),
                                            ({"ood.threshold": float("inf")}, "ood.threshold"),
                                            ({"std": [float("nan"), 0.2, 0.2]}, "std"),
                                            ({"std": [-0.2, 0.2, 0.2]}, "std"),
                                            ({"mean": [0.5, float("inf"), 0.5]}, "mean"),
                                            ({"temperature": float("nan")}, "temperature"),
                                            ({"temperature": 0.0}, "temperature")])
def test_bad_numbers_in_the_model_file_are_one_line_and_exit_2(random_student, tmp_path, changes, field):
    bad = _with_meta(random_student, tmp_path / "bad.onnx", **changes)
    proc = subprocess.run([sys.executable, "-m", "sonolens", "run", str(SAMPLE), "--model", str(bad), "--max-rate",
                           "--json", str(tmp_path / "r.json")], capture_output=True, text=True, timeout=120,
                          cwd=NEUTRAL_CWD)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and field in lines[0], proc.stderr


def test_the_report_is_strict_json(random_student, tmp_path):
    report = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, "-m", "sonolens", "run", str(SAMPLE), "--model", str(random_student),
                           "--max-rate", "--frames", "3", "--json", str(report)], capture_output=True, text=True,
                          timeout=120, cwd=NEUTRAL_CWD)
    assert proc.returncode == 0, proc.stderr
    json.loads(report.read_text(), parse_constant=lambda c: pytest.fail(f"bare {c} in the JSON report"))
