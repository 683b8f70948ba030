"""The student, its ONNX export with the fused Grad-CAM output, checkpoints, INT8, ``sonolens export``.

The central claim: the closed-form CAM inside the graph equals pytorch-grad-cam's ``GradCAM`` on the same
layer, for every class, after the same normalise → upsample → normalise (``pipeline.cam``).
"""

from __future__ import annotations

import dataclasses
import json

import cv2
import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from sonolens.models import create_model
from sonolens.models.cam_fusion import FusedCamWrapper, hardswish_grad
from sonolens.models.checkpoint import load_checkpoint, save_checkpoint
from sonolens.models.onnx_export import export_onnx, read_spec
from sonolens.models.quantize import quantize_int8
from sonolens.models.random_student import RANDOM_PROVENANCE, build_random_student
from sonolens.pipeline.cam import cam_for_display
from sonolens.pipeline.engines import OnnxEngine
from sonolens.pipeline.errors import ModelError
from sonolens.pipeline.modelfile import META_KEY, ModelSpec
from sonolens.training.export_cli import cli_main

PARITY_ATOL = 1e-3


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One intra-op thread: on a busy 2-core machine OpenMP barriers make multi-threaded backward passes
    many times slower, and these small models gain nothing from a second thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def student():
    return build_random_student(seed=0)


def _inputs(n_white: int = 2, n_smooth: int = 2, seed: int = 123) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    white = torch.randn(n_white, 3, 224, 224, generator=g)
    smooth = F.interpolate(torch.randn(n_smooth, 3, 14, 14, generator=g), size=(224, 224), mode="bilinear",
                           align_corners=False)
    return torch.cat([white, smooth])


def busi_input(busi_dir, name: str = "benign (12).png") -> torch.Tensor:
    """One BUSI image, resized and normalised the way the model expects (ImageNet mean/std)."""
    path = busi_dir / name.split(" ")[0] / name
    if not path.exists():
        path = sorted((busi_dir / "benign").glob("*.png"))[0]
    rgb = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    rgb = cv2.resize(rgb, (224, 224), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    x = (rgb - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
    return torch.from_numpy(x.transpose(2, 0, 1).copy())[None]


def gradcam_maps(model, x: torch.Tensor) -> np.ndarray:
    """pytorch-grad-cam's GradCAM on ``blocks.5``, one call per class: [C, H, W] in [0, 1]."""
    n_classes = model.classifier.out_features
    with GradCAM(model=model, target_layers=[model.get_submodule("blocks.5")]) as cam:
        return np.stack([cam(input_tensor=x, targets=[ClassifierOutputTarget(c)])[0] for c in range(n_classes)])


def assert_cam_parity(reference: np.ndarray, fused_raw: np.ndarray) -> None:
    """Every class: fused map through ``pipeline.cam`` == GradCAM map, and the map is not flat."""
    size = reference.shape[1:]
    for c in range(reference.shape[0]):
        fused = cam_for_display(fused_raw, c, size)
        assert fused.shape == reference[c].shape
        assert np.abs(fused - reference[c]).max() <= PARITY_ATOL, f"class {c}"
        # Not vacuous: a flat (e.g. all-zero after ReLU) map would match trivially.
        assert reference[c].max() - reference[c].min() > 0.5 and reference[c].std() > 0.02, f"class {c} flat"


# ---- the closed form ------------------------------------------------------------------------------------
def test_hardswish_grad_equals_autograd_including_boundaries():
    z = torch.cat([torch.linspace(-6, 6, 20001),
                   torch.tensor([-3.0, 3.0, -1.5, 1.5, 0.0]),
                   torch.nextafter(torch.tensor([-3.0, -3.0, 3.0, 3.0]),
                                   torch.tensor([-4.0, 0.0, 0.0, 4.0]))]).requires_grad_(True)
    F.hardswish(z).sum().backward()
    assert torch.equal(hardswish_grad(z.detach()), z.grad)


def test_parity_inputs_exercise_every_branch_of_hardswish_grad(student):
    # The derivative is not a clamp (it dips to -1/2 above -3 and jumps at 3): the parity inputs must put
    # conv_head's pre-activation in every region, or an approximation could pass the parity test.
    with torch.no_grad():
        feats = student.forward_features(_inputs())
        z = student.conv_head(feats.mean((2, 3), keepdim=True)).flatten()
    for lo, hi in [(-np.inf, -3), (-3, -1.5), (-1.5, 1.5), (1.5, 3), (3, np.inf)]:
        assert int(((z > lo) & (z < hi)).sum()) > 10, (lo, hi)


def test_wrapper_logits_equal_model(student):
    x = _inputs()
    with torch.no_grad():
        logits, cam = FusedCamWrapper(student)(x)
        ref = student(x)
    torch.testing.assert_close(logits, ref, atol=1e-4, rtol=1e-5)
    assert cam.shape == (4, 3, 7, 7) and cam.dtype == torch.float32 and bool((cam >= 0).all())
    assert float(ref.std(0).min()) > 0.1  # the random student responds to its input


def test_fused_cam_equals_gradcam_on_random_inputs(student):
    x = _inputs()
    wrapper = FusedCamWrapper(student)
    with torch.no_grad():
        _, cams = wrapper(x)
    for i in range(len(x)):
        assert_cam_parity(gradcam_maps(student, x[i:i + 1]), cams[i].numpy())


@pytest.mark.shared
def test_fused_cam_equals_gradcam_on_busi_image(student, busi_dir):
    x = busi_input(busi_dir)
    with torch.no_grad():
        _, cams = FusedCamWrapper(student)(x)
    assert_cam_parity(gradcam_maps(student, x), cams[0].numpy())


def test_wrapper_refuses_a_head_it_cannot_fuse(student):
    other = build_random_student(seed=1)
    other.sonolens_spec = dataclasses.replace(other.sonolens_spec, cam_layer="blocks.4")
    with pytest.raises(ModelError, match="cam_layer"):
        FusedCamWrapper(other)


# ---- ONNX export -----------------------------------------------------------------------------------------
def test_onnx_matches_torch_logits_and_gradcam(random_student, student):
    engine = OnnxEngine(random_student, threads=1)
    x = _inputs(1, 1, seed=7)
    with torch.no_grad():
        ref_logits = student(x).numpy()
    for i in range(len(x)):
        logits, cam = engine.run(x[i:i + 1].numpy())
        np.testing.assert_allclose(logits, ref_logits[i], atol=1e-4, rtol=0)
        assert cam.shape == (3, 7, 7) and cam.dtype == np.float32
        assert_cam_parity(gradcam_maps(student, x[i:i + 1]), cam)


@pytest.mark.shared
def test_onnx_cam_equals_gradcam_on_busi_image(random_student, student, busi_dir):
    x = busi_input(busi_dir, "malignant (5).png")
    _, cam = OnnxEngine(random_student, threads=1).run(x.numpy())
    assert_cam_parity(gradcam_maps(student, x), cam)


def test_onnx_graph_contract_and_metadata(random_student):
    proto = onnx.load(str(random_student))
    onnx.checker.check_model(proto)
    dims = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in list(proto.graph.input) + list(proto.graph.output)}
    assert dims == {"image": ["batch", 3, 224, 224], "logits": ["batch", 3], "cam": ["batch", 3, 7, 7]}
    meta = ModelSpec.from_json({p.key: p.value for p in proto.metadata_props}[META_KEY])
    assert meta.arch == "mobilenetv3_small_100" and meta.cam_layer == "blocks.5" and meta.has_cam
    assert meta.class_names == ("normal", "benign", "malignant") and meta.input_size == (224, 224)
    assert meta.trained is False and meta.provenance["weights"] == RANDOM_PROVENANCE


def test_metadata_round_trip_and_other_classes_sizes(tmp_path):
    model = create_model("mobilenetv3_small_100", class_names=("a", "b"), input_size=(256, 192),
                         mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    written = export_onnx(model, tmp_path / "m.onnx",
                          meta_overrides={"version": "7", "provenance": {"dataset": "toy", "split": "s1"}})
    assert read_spec(tmp_path / "m.onnx") == written
    engine = OnnxEngine(tmp_path / "m.onnx")
    assert engine.meta == written
    assert written.class_names == ("a", "b") and written.input_size == (256, 192) and written.version == "7"
    assert written.mean == (0.5, 0.5, 0.5) and written.provenance["dataset"] == "toy"
    assert json.loads(written.to_json())["provenance"]["split"] == "s1"
    x = np.random.default_rng(0).standard_normal((3, 3, 256, 192)).astype(np.float32)
    logits, cam = engine.run_batch(x)  # dynamic batch axis
    assert logits.shape == (3, 2) and cam.shape == (3, 2, 8, 6)
    with torch.no_grad():
        np.testing.assert_allclose(logits, model(torch.from_numpy(x)).numpy(), atol=1e-4, rtol=0)


def test_export_refuses_overrides_that_contradict_the_model(tmp_path, student):
    with pytest.raises(ValueError):
        export_onnx(student, tmp_path / "x.onnx", meta_overrides={"class_names": ("a", "b")})
    assert not (tmp_path / "x.onnx").exists()


# ---- INT8 ------------------------------------------------------------------------------------------------
def test_int8_loads_keeps_metadata_and_mostly_agrees(random_student, tmp_path):
    dst = tmp_path / "int8.onnx"
    qmeta = quantize_int8(random_student, dst)
    fp32, int8 = OnnxEngine(random_student, threads=1), OnnxEngine(dst, threads=1)
    assert int8.meta == qmeta and qmeta.provenance["quantized"] == "int8"
    assert qmeta.class_names == fp32.meta.class_names and qmeta.trained is False
    assert any(n.op_type == "QuantizeLinear" for n in onnx.load(str(dst)).graph.node)
    x = _inputs(8, 8, seed=99).numpy()
    agree = 0
    for i in range(len(x)):
        lf, cf = fp32.run(x[i:i + 1])
        lq, cq = int8.run(x[i:i + 1])
        assert cq.shape == cf.shape
        agree += int(lf.argmax() == lq.argmax())
    assert agree >= 0.75 * len(x), f"int8 argmax agrees on {agree}/{len(x)}"


# ---- checkpoints and the CLI -------------------------------------------------------------------------
def test_checkpoint_round_trip(tmp_path, student):
    save_checkpoint(student, tmp_path / "c.pt", provenance={"dataset": "BUSI", "config_hash": "abc"})
    loaded = load_checkpoint(tmp_path / "c.pt")
    # The whole spec comes back; the given provenance replaces the random student's.
    assert loaded.sonolens_spec == dataclasses.replace(student.sonolens_spec,
                                                       provenance={"dataset": "BUSI", "config_hash": "abc"})
    x = _inputs(1, 0)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), student(x))


@pytest.mark.parametrize("content", [b"not a checkpoint", None, "dict"])
def test_load_checkpoint_errors(tmp_path, content):
    path = tmp_path / "bad.pt"
    if content == "dict":
        torch.save({"state_dict": {}}, str(path))
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelError) as err:
        load_checkpoint(path)
    assert "\n" not in str(err.value) and str(path.name) in str(err.value)


def test_cli_export_checkpoint_and_int8(tmp_path, student, capsys):
    save_checkpoint(student, tmp_path / "c.pt", provenance={"dataset": "BUSI", "version": "3"})
    rc = cli_main(["--checkpoint", str(tmp_path / "c.pt"), "--out", str(tmp_path / "m.onnx"),
                   "--int8", str(tmp_path / "q.onnx")])
    assert rc == 0 and "wrote" in capsys.readouterr().out
    meta = OnnxEngine(tmp_path / "m.onnx").meta
    # The checkpoint's provenance replaces the random student's, so the export counts as trained.
    assert meta.trained is True and meta.version == "3" and meta.provenance["dataset"] == "BUSI"
    assert meta.provenance["checkpoint"] == "c.pt"
    assert OnnxEngine(tmp_path / "q.onnx").meta.provenance["quantized"] == "int8"


def test_checkpoint_of_a_random_student_stays_untrained(tmp_path, student):
    save_checkpoint(student, tmp_path / "r.pt")  # provenance defaults to the model's: "random init"
    assert cli_main(["--checkpoint", str(tmp_path / "r.pt"), "--out", str(tmp_path / "r.onnx")]) == 0
    meta = OnnxEngine(tmp_path / "r.onnx").meta
    assert meta.trained is False and meta.provenance["weights"] == RANDOM_PROVENANCE


def test_cli_random_export_and_bad_checkpoint_exit_code(tmp_path):
    from sonolens.cli import main

    assert cli_main(["--random", "--seed", "3", "--out", str(tmp_path / "r.onnx")]) == 0
    meta = OnnxEngine(tmp_path / "r.onnx").meta
    assert meta.trained is False and meta.provenance["seed"] == 3
    assert main(["export", "--checkpoint", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "x.onnx")]) == 2


# ---- pretrained weights ------------------------------------------------------------------------------
def test_pretrained_offline_gives_one_line_error(monkeypatch, tmp_path):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    with pytest.raises(ModelError) as err:
        create_model("mobilenetv3_small_100", pretrained=True)
    msg = str(err.value)
    assert "\n" not in msg and "pretrained_file=PATH" in msg


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_pretrained_file_same_classes(tmp_path, student, fmt):
    path = tmp_path / f"w.{fmt}"
    if fmt == "pth":
        torch.save(student.state_dict(), str(path))
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in student.state_dict().items()}, str(path))
    model = create_model("mobilenetv3_small_100", pretrained_file=path).eval()
    for key, value in student.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_pretrained_file_imagenet_head_is_replaced(tmp_path, student):
    torch.manual_seed(5)
    imagenet = create_model("mobilenetv3_small_100", class_names=tuple(f"c{i}" for i in range(1000)))
    torch.save(imagenet.state_dict(), str(tmp_path / "in1k.pth"))
    model = create_model("mobilenetv3_small_100", pretrained_file=tmp_path / "in1k.pth")
    assert model.classifier.out_features == 3
    assert torch.equal(model.conv_head.weight, imagenet.conv_head.weight)
    assert torch.equal(model.blocks[0][0].conv_dw.weight, imagenet.blocks[0][0].conv_dw.weight)


def test_pretrained_file_missing(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        create_model("mobilenetv3_small_100", pretrained_file=tmp_path / "nope.pth")


def test_student_config():
    model = create_model("mobilenetv3_small_100")
    cfg = model.sonolens_spec
    assert cfg.arch == "mobilenetv3_small_100" and cfg.cam_layer == "blocks.5"
    assert model.get_submodule(cfg.cam_layer) is model.blocks[-1]
    assert model.classifier.out_features == len(cfg.class_names) == 3
