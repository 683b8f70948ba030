"""``ModelSpec`` — the one description of a model — and the module boundaries of ``models/``.

The spec must round-trip through dicts, JSON, checkpoints and ONNX metadata; files written before a field
existed (the shipped models, old checkpoints) must keep loading, and files with fields added later must too.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
import torch

from sonolens.models import create_model
from sonolens.models.checkpoint import checkpoint_spec, load_checkpoint, save_checkpoint
from sonolens.models.onnx_export import read_spec
from sonolens.pipeline.engines import OnnxEngine
from sonolens.pipeline.errors import ModelError
from sonolens.pipeline.modelfile import FORMAT, META_KEY, ModelSpec

REPO = Path(__file__).resolve().parents[2]
WEIGHTS = sorted((REPO / "models" / "weights").glob("*.onnx"))

SPEC = ModelSpec(arch="mobilenetv3_small_100", class_names=("a", "b"), input_size=(64, 48),
                 mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3), cam_layer="blocks.5", version="3", trained=True,
                 provenance={"dataset": "toy", "kd": {"t": 4.0}}, builder_args={"vit_dim": 32})


def test_dict_and_json_round_trip():
    d = SPEC.to_dict()
    assert d["class_names"] == ["a", "b"] and d["input_size"] == [64, 48] and d["format"] == FORMAT
    json.dumps(d)  # JSON-ready
    assert ModelSpec.from_dict(d) == SPEC
    assert ModelSpec.from_json(SPEC.to_json()) == SPEC
    assert SPEC.num_classes == 2


def test_sequences_are_normalised_and_bad_fields_refused():
    listy = dataclasses.replace(SPEC, class_names=["a", "b"], input_size=[64, 48], mean=[0.5, 0.4, 0.3])
    assert listy == SPEC and isinstance(listy.input_size, tuple)
    for bad in ({"input_size": (64,)}, {"mean": (0.5, 0.5)}, {"std": (0.2, 0.0, 0.2)}, {"class_names": ()}):
        with pytest.raises(ValueError):
            dataclasses.replace(SPEC, **bad)


def test_unknown_keys_ignored_missing_optional_keys_default():
    d = SPEC.to_dict()
    d["ood_threshold"] = 0.25  # a field a later version may add
    d["calibration"] = {"temperature": 1.3}
    assert ModelSpec.from_json(json.dumps(d)) == SPEC
    minimal = {k: d[k] for k in ("arch", "class_names", "input_size", "mean", "std", "format")}
    spec = ModelSpec.from_json(json.dumps(minimal))
    assert (spec.cam_layer, spec.has_cam, spec.version, spec.trained, spec.provenance, spec.builder_args) == \
        (None, True, "0", False, {}, {})


def test_format_and_required_fields_are_checked():
    d = SPEC.to_dict()
    with pytest.raises(ValueError, match="format"):
        ModelSpec.from_json(json.dumps({**d, "format": "sonolens-model/2"}))
    with pytest.raises(ValueError, match="format"):
        ModelSpec.from_json(json.dumps({k: v for k, v in d.items() if k != "format"}))
    with pytest.raises(KeyError, match="input_size"):
        ModelSpec.from_dict({k: v for k, v in d.items() if k != "input_size"})


@pytest.mark.parametrize("path", WEIGHTS, ids=[p.name for p in WEIGHTS])
def test_shipped_models_load_unchanged(path):
    stored = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}[META_KEY]
    spec = OnnxEngine(path, threads=1).meta
    # builder_args: at most the informational "init" (how the graph was built before the checkpoint's weights)
    assert spec == read_spec(path) and spec.trained and set(spec.builder_args) <= {"init"}
    # Every stored value survives; keys added since take their defaults (written on the next export).
    written, old = spec.to_dict(), json.loads(stored)
    added = {k: written.pop(k) for k in set(written) - set(old)}
    assert written == old
    assert added == {k: v for k, v in {"builder_args": {}, "temperature": 1.0, "ood": {}}.items() if k in added}


def test_checkpoint_carries_the_spec(tmp_path):
    model = create_model("mobilenetv3_small_100", class_names=("a", "b"), input_size=(64, 64),
                         mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    path = save_checkpoint(model, tmp_path / "c.pt", provenance={"dataset": "toy"},
                           training_state={"epoch": 4})
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert raw["epoch"] == 4 and checkpoint_spec(raw)[0] == "mobilenetv3_small_100"
    back = load_checkpoint(path)
    assert back.sonolens_spec == dataclasses.replace(model.sonolens_spec, provenance={"dataset": "toy"})
    with pytest.raises(ValueError, match="state_dict"):
        save_checkpoint(model, tmp_path / "d.pt", training_state={"state_dict": {}})


def test_legacy_checkpoint_still_loads(tmp_path):
    """The layout written before ModelSpec: "model_cfg" with "extra", provenance at the top level."""
    teacher = create_model("hybrid_offline", class_names=("a", "b"), input_size=(64, 64), vit_dim=32, vit_depth=1,
                           vit_heads=2, head_hidden=16)
    spec = teacher.sonolens_spec
    legacy_cfg = {"arch": spec.arch, "class_names": list(spec.class_names), "input_size": list(spec.input_size),
                  "mean": list(spec.mean), "std": list(spec.std), "cam_layer": spec.cam_layer,
                  "extra": dict(spec.builder_args)}
    torch.save({"model_name": "hybrid_offline", "model_cfg": legacy_cfg, "state_dict": teacher.state_dict(),
                "provenance": {"dataset": "old"}}, tmp_path / "old.pt")
    back = load_checkpoint(tmp_path / "old.pt")
    assert back.sonolens_spec == dataclasses.replace(spec, provenance={"dataset": "old"})
    assert back.sonolens_spec.builder_args["vit_depth"] == 1
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(back(x), teacher.eval()(x))


def test_unknown_model_in_checkpoint_is_one_line_error(tmp_path):
    torch.save({"model_name": "nope", "model_spec": SPEC.to_dict(), "state_dict": {}}, tmp_path / "x.pt")
    with pytest.raises(ModelError, match="nope") as err:
        load_checkpoint(tmp_path / "x.pt")
    assert "\n" not in str(err.value)


def test_registry_is_filled_by_importing_the_package():
    """A fresh interpreter that imports only the registry module sees every model (the package registers them)."""
    code = "from sonolens.models.registry import list_models; print(','.join(list_models()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert set(out.stdout.strip().split(",")) >= {"mobilenetv3_small_100", "hybrid_offline", "hybrid_paper",
                                                  "vit_nanoray_offline", "vit_nanoray_paper"}


def _imports(path: Path) -> list[str]:
    """Absolute module names imported by ``path`` (relative imports resolved against its package)."""
    package = "sonolens." + path.parent.name
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                names.append(f"{base}.{node.module}" if node.module else base)
            else:
                names.append(node.module or "")
            names += [f"{names[-1]}.{a.name}" for a in node.names]
    return names


def test_models_never_import_training_and_registry_names_no_model():
    offenders = {p.name: n for p in (REPO / "models").glob("*.py") for n in _imports(p)
                 if n.startswith("sonolens.training")}
    assert offenders == {}
    registry = _imports(REPO / "models" / "registry.py")
    assert not [n for n in registry if n.startswith(("sonolens.models.student", "sonolens.models.teacher"))]


def test_spec_modules_stay_torch_free():
    for rel in ("pipeline/modelfile.py", "pipeline/preprocess.py"):
        assert not [n for n in _imports(REPO / rel) if n.split(".")[0] in ("torch", "timm", "PyQt6")], rel
