"""Runtime engines (``pipeline.engines``), CAM post-processing (``pipeline.cam``) and the PyTorch reference
engine (``models.torch_engine``).

Broken or mismatched model files must fail at load time with a one-line ``ModelError``.
"""

from __future__ import annotations

import filecmp
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import NEUTRAL_CWD, has_torch

from sonolens.pipeline.cam import cam_for_display, normalize_cam, upsample
from sonolens.pipeline.engines import BUNDLED_MODELS, OnnxEngine, bundled_model_path, default_model_path, load_engine
from sonolens.pipeline.errors import ModelError
from sonolens.pipeline.modelfile import META_KEY

REPO = Path(__file__).resolve().parents[2]


def _x(seed: int = 0, shape=(1, 3, 224, 224)) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _rewrite(src: Path, dst: Path, *, meta=None, drop_meta: bool = False, drop_cam: bool = False) -> Path:
    """A copy of ``src`` with its metadata changed (``meta``: dict of JSON fields to replace)."""
    onnx = pytest.importorskip("onnx")
    proto = onnx.load(str(src))
    props = {p.key: p.value for p in proto.metadata_props}
    del proto.metadata_props[:]
    if not drop_meta:
        value = props[META_KEY]
        if meta is not None:
            d = json.loads(value)
            d.update(meta)
            value = json.dumps(d)
        entry = proto.metadata_props.add()
        entry.key, entry.value = META_KEY, value
    if drop_cam:
        keep = [o for o in proto.graph.output if o.name != "cam"]
        del proto.graph.output[:]
        proto.graph.output.extend(keep)
    onnx.save(proto, str(dst))
    return dst


def _assert_one_line_model_error(path, match: str) -> str:
    with pytest.raises(ModelError, match=match) as err:
        OnnxEngine(path)
    msg = str(err.value)
    assert "\n" not in msg and len(msg) < 300
    return msg


# ---- OnnxEngine ----------------------------------------------------------------------------------------
def test_engine_reads_meta_and_runs(random_student):
    engine = OnnxEngine(random_student, threads=1)
    assert engine.meta.class_names == ("normal", "benign", "malignant")
    assert engine.meta.trained is not has_torch()  # exported at random here; the bundled model stands in without torch
    assert engine.has_cam and engine.cam_size == (7, 7)
    logits, cam = engine.run(_x(1))
    assert logits.shape == (3,) and logits.dtype == np.float32 and np.isfinite(logits).all()
    assert cam.shape == (3, 7, 7) and cam.dtype == np.float32 and (cam >= 0).all() and cam.max() > 0
    logits_only, none = engine.run(_x(1), want_cam=False)
    assert none is None
    np.testing.assert_array_equal(logits_only, logits)
    other, _ = engine.run(_x(2))
    assert np.abs(other - logits).max() > 1e-3  # the output depends on the input


def test_engine_batch_and_default_threads(random_student):
    engine = OnnxEngine(random_student)  # threads=0: ORT default
    x = _x(3, (2, 3, 224, 224))
    logits, cam = engine.run_batch(x)
    assert logits.shape == (2, 3) and cam.shape == (2, 3, 7, 7)
    np.testing.assert_allclose(engine.run(x[1:])[0], logits[1], atol=1e-5)


def test_engine_rejects_wrong_input_shape(random_student):
    engine = OnnxEngine(random_student, threads=1)
    with pytest.raises(ModelError, match="does not fit"):
        engine.run(_x(0, (1, 3, 200, 224)))


def test_missing_file_and_directory(tmp_path):
    _assert_one_line_model_error(tmp_path / "nope.onnx", "not found")
    _assert_one_line_model_error(tmp_path, "not a file")


def test_random_bytes_and_truncated_model(random_student, tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    _assert_one_line_model_error(junk, "not a readable ONNX model")
    data = random_student.read_bytes()
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(data[: len(data) // 2])
    _assert_one_line_model_error(truncated, "not a readable ONNX model")


def test_no_metadata(random_student, tmp_path):
    _assert_one_line_model_error(_rewrite(random_student, tmp_path / "m.onnx", drop_meta=True),
                                 "no 'sonolens' metadata")


def test_bad_metadata_format(random_student, tmp_path):
    _assert_one_line_model_error(_rewrite(random_student, tmp_path / "m.onnx", meta={"format": "other/9"}),
                                 "bad 'sonolens' metadata")


def test_metadata_input_size_disagrees_with_graph(random_student, tmp_path):
    msg = _assert_one_line_model_error(
        _rewrite(random_student, tmp_path / "m.onnx", meta={"input_size": [256, 256]}), "input_size")
    assert "(256, 256)" in msg and "(224, 224)" in msg


def test_metadata_class_count_disagrees_with_logits(random_student, tmp_path):
    path = _rewrite(random_student, tmp_path / "m.onnx", meta={"class_names": ["a", "b", "c", "d"]})
    _assert_one_line_model_error(path, "logits have 3 values but the metadata lists 4")


def test_metadata_promises_cam_the_graph_lacks(random_student, tmp_path):
    _assert_one_line_model_error(_rewrite(random_student, tmp_path / "m.onnx", drop_cam=True), "no 'cam' output")
    # Declaring has_cam=false makes the same graph a valid logits-only model.
    path = _rewrite(random_student, tmp_path / "m2.onnx", drop_cam=True, meta={"has_cam": False})
    engine = OnnxEngine(path)
    logits, cam = engine.run(_x(0))
    assert cam is None and logits.shape == (3,)


# ---- bundled models and load_engine --------------------------------------------------------------------
def test_load_engine_by_path_and_unknown_name(random_student):
    assert load_engine(str(random_student), threads=1).meta.arch == "mobilenetv3_small_100"
    with pytest.raises(ModelError, match="not a bundled model name"):
        load_engine("no-such-model")


@pytest.mark.parametrize("name", sorted(BUNDLED_MODELS))
def test_load_engine_bundled_name(name):
    installed = REPO / "models" / "weights" / BUNDLED_MODELS[name]
    if installed.is_file():
        # the installed copy (editable: the file itself; a normal install: a copy in site-packages)
        assert filecmp.cmp(bundled_model_path(name), installed, shallow=False)
        assert load_engine(name).meta.class_names
    else:
        assert bundled_model_path(name) is None
        with pytest.raises(ModelError, match="not installed") as err:
            load_engine(name)
        assert "\n" not in str(err.value)


def test_default_model_path_points_into_the_models_package():
    path = default_model_path()
    expected = REPO / "models" / "weights" / "busi_lite0_student.onnx"
    assert (path is None) == (not expected.is_file())
    if path is not None:
        assert filecmp.cmp(path, expected, shallow=False)


def test_runtime_imports_neither_torch_nor_the_models_package(random_student):
    code = ("import sys; from sonolens.pipeline.engines import OnnxEngine, default_model_path; "
            "import sonolens.pipeline.cam as c; default_model_path(); "
            f"e = OnnxEngine({str(random_student)!r}); "
            "bad = [m for m in ('torch', 'timm', 'sonolens.models', 'PyQt6') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=NEUTRAL_CWD)
    assert done.returncode == 0, done.stdout + done.stderr


# ---- pipeline.cam --------------------------------------------------------------------------------------
def test_normalize_and_upsample_match_pytorch_grad_cam():
    pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.image import scale_cam_image

    cam = np.random.default_rng(0).random((7, 7)).astype(np.float32) * 3 + 0.5
    np.testing.assert_array_equal(normalize_cam(cam), scale_cam_image(cam[None])[0])
    up = upsample(cam, (96, 64))  # (H, W)
    assert up.shape == (96, 64)
    np.testing.assert_array_equal(up, cv2.resize(cam, (64, 96), interpolation=cv2.INTER_LINEAR))
    # GradCAM's full post-processing: scale+resize per layer, then scale again after aggregation.
    cams = np.stack([cam, cam[::-1]])
    expected = scale_cam_image(scale_cam_image(cams[1:2], (64, 96)))[0]
    np.testing.assert_allclose(cam_for_display(cams, 1, (96, 64)), expected, atol=1e-6)
    assert cam_for_display(cams[None], 0, (96, 64)).shape == (96, 64)  # [1, C, h, w] accepted


def test_cam_for_display_edge_cases():
    flat = np.zeros((2, 7, 7), np.float32)
    out = cam_for_display(flat, 0, (32, 32))
    assert out.shape == (32, 32) and np.all(out == 0)
    with pytest.raises(IndexError):
        cam_for_display(flat, 2, (32, 32))
    with pytest.raises(ValueError):
        cam_for_display(np.zeros((7, 7)), 0, (32, 32))


# ---- TorchEngine (the reference) -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def torch_engine():
    torch = pytest.importorskip("torch")

    from sonolens.models.random_student import build_random_student
    from sonolens.models.torch_engine import TorchEngine

    before = torch.get_num_threads()  # TorchEngine(threads=1) sets torch's global thread count
    yield TorchEngine(build_random_student(seed=0), threads=1)
    torch.set_num_threads(before)


def test_torch_engine_matches_onnx_engine(random_student, torch_engine):
    onnx_engine = OnnxEngine(random_student, threads=1)
    assert torch_engine.meta.class_names == onnx_engine.meta.class_names
    assert torch_engine.meta.cam_layer == onnx_engine.meta.cam_layer == "blocks.5"
    for seed in (10, 11):
        x = _x(seed)
        lt, ct = torch_engine.run(x)
        lo, co = onnx_engine.run(x)
        np.testing.assert_allclose(lo, lt, atol=1e-4, rtol=0)
        assert ct.shape == (3, 224, 224)
        for c in range(3):
            fused = cam_for_display(co, c, (224, 224))
            assert np.abs(fused - ct[c]).max() <= 1e-3
            assert ct[c].std() > 0.02  # not a flat map


def test_torch_engine_single_class_and_logits_only(torch_engine):
    x = _x(12)
    logits, none = torch_engine.run(x, want_cam=False)
    assert none is None and logits.shape == (3,)
    l2, cams = torch_engine.run(x, class_idx=2)
    np.testing.assert_allclose(l2, logits, atol=1e-5)
    assert cams[2].max() > 0 and not cams[0].any() and not cams[1].any()


def test_torch_engine_from_checkpoint(tmp_path, torch_engine):
    from sonolens.models.checkpoint import save_checkpoint
    from sonolens.models.torch_engine import TorchEngine

    save_checkpoint(torch_engine.model, tmp_path / "c.pt")
    engine = TorchEngine(tmp_path / "c.pt")
    x = _x(13)
    np.testing.assert_allclose(engine.run(x, want_cam=False)[0], torch_engine.run(x, want_cam=False)[0],
                               atol=1e-6)
    with pytest.raises(ModelError, match="does not exist"):
        TorchEngine(tmp_path / "missing.pt")
