"""Training side: teachers, the KD loss, configs, the one training loop (teacher/distill/baseline), evaluation.

End-to-end runs use a dozen synthetic images at 64 px and tiny models, so nothing is downloaded and the file
stays fast; the real BUSI runs are the lead's (``sonolens train ... --config training/configs/busi_*.yaml``).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sonolens.models import create_model
from sonolens.models.checkpoint import checkpoint_payload, checkpoint_spec, load_checkpoint
from sonolens.models.onnx_export import export_onnx
from sonolens.pipeline.errors import ConfigError, ModelError
from sonolens.training import evaluate as ev
from sonolens.training import train as tr
from sonolens.training.config import DEFAULTS, load_config, resolve_path
from sonolens.training.losses import KDLoss

CLASSES = ("normal", "benign", "malignant")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors gain nothing from threads, and on a busy 2-core machine OpenMP barriers make two threads
    many times slower than one. Restored afterwards for the other test files."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --------------------------------------------------------------------------------------------------------
# Synthetic data and tiny runs
# --------------------------------------------------------------------------------------------------------
def _image(label: str, rng: np.random.Generator, size: int = 80) -> np.ndarray:
    """Speckly background; benign: a bright smooth ellipse; malignant: a dark irregular blob."""
    img = cv2.GaussianBlur((rng.random((size, size)) * 120 + 40).astype(np.float32), (0, 0), 1.5)
    c = (int(rng.integers(25, 55)), int(rng.integers(25, 55)))
    if label == "benign":
        cv2.ellipse(img, c, (14, 9), float(rng.integers(0, 180)), 0, 360, 230, -1)
    elif label == "malignant":
        pts = np.array([[c[0] + r * math.cos(a), c[1] + r * math.sin(a)] for a, r in
                        zip(np.linspace(0, 2 * math.pi, 9, endpoint=False), rng.integers(6, 16, 9))], np.int32)
        cv2.fillPoly(img, [pts], 5)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, Path]:
    """root/<class>/*.png (5 per class) and a split CSV: 3 train, 1 val, 1 test per class."""
    root = tmp_path_factory.mktemp("ds")
    rng = np.random.default_rng(0)
    rows = []
    for label in CLASSES:
        (root / label).mkdir()
        for i in range(5):
            rel = f"{label}/{label} ({i}).png"
            # Saved as RGB (like this BUSI copy): the readers must turn it into grayscale.
            assert cv2.imwrite(str(root / rel), cv2.cvtColor(_image(label, rng), cv2.COLOR_GRAY2BGR))
            rows.append({"file": rel, "label": label, "group": f"{label}{i}",
                         "split": "train" if i < 3 else "val" if i == 3 else "test"})
    split = root / "split.csv"
    with split.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["file", "label", "group", "split"])
        w.writeheader()
        w.writerows(rows)
    return root, split


TINY_TEACHER = ["model.input_size=[64,64]", "model.pretrained=false",
                "model.kwargs={vit_tokens: cnn, vit_dim: 32, vit_depth: 1, vit_heads: 2, head_hidden: 16, "
                "mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5]}"]


def _tiny(dataset, out: Path, *extra: str) -> list[str]:
    root, split = dataset
    return [f"data.root={root}", f"data.split_csv={split}", "model.input_size=[64,64]", "train.epochs=2",
            "train.batch_size=4", "train.progress=false", "train.tensorboard=false", "train.num_threads=1",
            "sched.warmup_epochs=0", f"output.dir={out}", *extra]


@pytest.fixture(scope="module")
def teacher_run(dataset, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "teacher"
    # Through the CLI, with the bundled config: the path the lead uses.
    rc = tr.cli_main(["teacher", "--config", "busi_teacher_offline", *_tiny(dataset, out, *TINY_TEACHER)])
    assert rc == 0
    return out


@pytest.fixture(scope="module")
def baseline_run(dataset, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "baseline"
    tr.run("baseline", load_config("busi_baseline", _tiny(dataset, out)))
    return out


def _check_run_dir(out: Path, epochs: int = 2) -> list[dict[str, str]]:
    for name in ("best.pt", "last.pt", "config.yaml", "env.json", "metrics.csv", "summary.json"):
        assert (out / name).is_file(), name
    with (out / "metrics.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == list(range(epochs))
    for r in rows:
        assert math.isfinite(float(r["train_loss"])) and 0 <= float(r["val_acc"]) <= 1
    env = json.loads((out / "env.json").read_text())
    assert env["seed"] == 0 and env["packages"]["torch"] and "commit" in env["git"]
    ckpt = torch.load(out / "best.pt", map_location="cpu", weights_only=True)
    assert {"model_name", "model_spec", "state_dict"} <= set(ckpt)
    # best.pt is the epoch with the best validation accuracy (ties -> lower validation loss)
    best = max(rows, key=lambda r: (float(r["val_acc"]), -float(r["val_loss"])))
    assert checkpoint_spec(ckpt)[1].provenance["epoch"] == int(best["epoch"])
    return rows


# --------------------------------------------------------------------------------------------------------
# KD loss
# --------------------------------------------------------------------------------------------------------
def test_kd_loss_matches_hand_computation():
    s = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
    t = torch.tensor([[1.0, 1.5, -0.5], [0.0, -1.0, 2.0]])
    y = torch.tensor([0, 1])
    T = 4.0
    parts = KDLoss(w_hard=0.75, w_kd=0.25, temperature=T)(s, y, t)
    sn, tn = s.double().numpy(), t.double().numpy()

    def log_softmax(z):
        z = z - z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    ce = -np.mean([log_softmax(sn)[i, y[i]] for i in range(2)])
    lp_s, lp_t = log_softmax(sn / T), log_softmax(tn / T)
    kl = (np.exp(lp_t) * (lp_t - lp_s)).sum(axis=1).mean()  # batch mean of per-sample KL
    assert parts.hard.item() == pytest.approx(ce, rel=1e-5)
    assert parts.kd.item() == pytest.approx(T * T * kl, rel=1e-5)
    assert parts.total.item() == pytest.approx(0.75 * ce + 0.25 * T * T * kl, rel=1e-5)


def test_kd_term_zero_for_identical_logits_and_gradient_only_to_student():
    s = torch.randn(5, 3, requires_grad=True)
    y = torch.randint(0, 3, (5,))
    same = KDLoss(0.5, 0.5, 4.0)(s, y, s.detach().clone())
    assert same.kd.item() == pytest.approx(0.0, abs=1e-6)
    t = torch.randn(5, 3, requires_grad=True)
    KDLoss(0.5, 0.5, 4.0)(s, y, t).total.backward()
    assert t.grad is None
    assert s.grad is not None and s.grad.abs().sum() > 0


# --------------------------------------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,mode,model", [("busi_teacher_offline", "teacher", "hybrid_offline"),
                                             ("busi_teacher_paper", "teacher", "hybrid_paper"),
                                             ("busi_distill_offline", "distill", "mobilenetv3_small_100"),
                                             ("busi_baseline", "baseline", "mobilenetv3_small_100")])
def test_bundled_configs_load(name, mode, model):
    cfg = load_config(name)
    assert cfg["mode"] == mode and cfg["model"]["name"] == model
    assert cfg["data"]["split_csv"] == "training/split_csv/busi.csv"
    assert cfg["optim"]["name"] == "adamw" and cfg["optim"]["weight_decay"] == 0.01
    assert isinstance(cfg["optim"]["lr"], float)


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[2] / "training" / "configs").glob("*.yaml")),
                         ids=lambda p: p.stem)
def test_every_bundled_config_validates(path):
    cfg = load_config(path)  # unknown keys, bad YAML or a bad mode raise ConfigError
    assert cfg["mode"] in ("teacher", "distill", "baseline", "feature") and cfg["name"] == path.stem
    assert (cfg["mode"] == "distill") == bool(cfg["teacher"]["checkpoint"])


def test_distill_and_baseline_share_the_budget():
    d, b = load_config("busi_distill_offline"), load_config("busi_baseline")
    for section in ("data", "model", "optim", "sched", "train", "augment"):
        assert d[section] == b[section], section
    assert d["kd"] == {"w_hard": 0.5, "w_kd": 0.5, "temperature": 4.0, "teacher_view": "same"}


def test_config_overrides():
    cfg = load_config("busi_distill_offline", ["optim.lr=3e-4", "model.input_size=[128, 96]", "kd.w_kd=0.25",
                                               "data.split_csv=training/split_csv/busi_paper.csv",
                                               "model.kwargs.drop_rate=0.1", "teacher.checkpoint=null", "name=x"])
    assert cfg["optim"]["lr"] == pytest.approx(3e-4) and isinstance(cfg["optim"]["lr"], float)
    assert cfg["model"]["input_size"] == [128, 96]
    assert cfg["kd"]["w_kd"] == 0.25 and cfg["kd"]["w_hard"] == 0.5  # siblings kept
    assert cfg["data"]["split_csv"].endswith("busi_paper.csv")
    assert cfg["model"]["kwargs"]["drop_rate"] == 0.1
    assert cfg["teacher"]["checkpoint"] is None
    assert tr.output_dir(cfg) == Path("runs/x")
    assert cfg["train"]["epochs"] == load_config("busi_distill_offline")["train"]["epochs"]
    with pytest.raises(ConfigError, match="optim.lrr"):
        load_config("busi_baseline", ["optim.lrr=1"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config("busi_baseline", ["optim.lr"])
    with pytest.raises(ConfigError, match="not found"):
        load_config("no_such_config")
    assert set(DEFAULTS) >= {"data", "model", "optim", "kd", "train", "output"}


def test_relative_paths_resolve_from_repo_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_path("training/split_csv/busi.csv").is_file()


def test_mode_mismatch_is_a_config_error(dataset, tmp_path):
    with pytest.raises(ConfigError, match="sonolens train baseline"):
        tr.run("distill", load_config("busi_baseline", _tiny(dataset, tmp_path)))
    with pytest.raises(ConfigError, match="teacher.checkpoint"):
        tr.run("distill", load_config("busi_distill_offline", _tiny(dataset, tmp_path, "teacher.checkpoint=null")))


# --------------------------------------------------------------------------------------------------------
# Teachers
# --------------------------------------------------------------------------------------------------------
TINY_PAPER = {"vit_name": "vit_tiny_patch16_224", "cnn_name": "convnext_atto", "head_hidden": 16,
              "input_size": (64, 64)}


def test_hybrid_paper_offline_error_points_to_pretrained_file(monkeypatch, tmp_path):
    import huggingface_hub.constants as hf

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    with pytest.raises(ModelError) as err:
        create_model("hybrid_paper", pretrained=True, **TINY_PAPER)
    msg = str(err.value)
    assert "\n" not in msg and "pretrained_file=" in msg and "--pretrained-file" in msg


def test_hybrid_paper_loads_branches_from_local_file(tmp_path):
    torch.manual_seed(1)
    src = create_model("hybrid_paper", **TINY_PAPER)
    nested, flat = tmp_path / "nested.pth", tmp_path / "flat.pth"
    torch.save({"vit": src.vit.state_dict(), "cnn": src.cnn.state_dict()}, nested)
    torch.save({**{f"vit.{k}": v for k, v in src.vit.state_dict().items()},
                **{f"cnn.{k}": v for k, v in src.cnn.state_dict().items()}}, flat)
    for path in (nested, flat):
        torch.manual_seed(2)
        m = create_model("hybrid_paper", pretrained=True, pretrained_file=str(path), **TINY_PAPER)
        for branch in ("vit", "cnn"):
            a, b = getattr(src, branch).state_dict(), getattr(m, branch).state_dict()
            assert all(torch.equal(a[k], b[k]) for k in a)
        assert m.sonolens_spec.builder_args["init"].startswith("file:")
    torch.save({"vit": src.vit.state_dict()}, tmp_path / "half.pth")
    with pytest.raises(ModelError, match="cnn"):
        create_model("hybrid_paper", pretrained_file=str(tmp_path / "half.pth"), **TINY_PAPER)


def test_efficientnet_lite0_package_weights_are_imagenet_trained():
    """The package's .pth loads in order into timm's tf_efficientnet_lite0 and classifies a real photo."""
    import timm
    from matplotlib import cbook
    from timm.data import ImageNetInfo

    from sonolens.models.teacher import efficientnet_lite_pth, load_efficientnet_lite_pth

    pth = efficientnet_lite_pth("lite0")
    net = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()  # with its 1000-class head
    load_efficientnet_lite_pth(net, pth)
    src = torch.load(pth, map_location="cpu", weights_only=True)
    for (sk, sv), (dk, dv) in zip(src.items(), net.state_dict().items()):
        assert sv.shape == dv.shape and torch.equal(sv, dv), (sk, dk)
    with cbook.get_sample_data("grace_hopper.jpg") as fh:  # Grace Hopper in uniform, shipped with matplotlib
        rgb = cv2.cvtColor(cv2.imdecode(np.frombuffer(fh.read(), np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    x = torch.from_numpy(cv2.resize(rgb, (224, 224), interpolation=cv2.INTER_AREA)).permute(2, 0, 1)[None]
    x = (x.float() / 255 - 0.5) / 0.5  # EfficientNet-Lite's own normalisation
    with torch.no_grad():
        probs = net(x).softmax(1)[0]
    top = int(probs.argmax())
    assert ImageNetInfo().index_to_description(top) == "military uniform" and probs[top] > 0.3
    # A random network is nowhere near that confident.
    with torch.no_grad():
        rand = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()(x).softmax(1)[0]
    assert rand.max() < 0.05


def test_hybrid_offline_uses_the_imagenet_cnn_and_renormalises():
    from sonolens.models.teacher import efficientnet_lite_pth

    m = create_model("hybrid_offline", pretrained=True, vit_dim=32, vit_depth=1, vit_heads=2, input_size=(64, 64))
    src = torch.load(efficientnet_lite_pth("lite0"), map_location="cpu", weights_only=True)
    assert torch.equal(m.cnn.conv_stem.weight, src["_conv_stem.weight"])
    # Inputs are ImageNet-normalised; the CNN branch gets the 0.5/0.5 normalisation its weights expect.
    raw = torch.rand(1, 3, 8, 8)
    spec = m.sonolens_spec
    imnet = (raw - torch.tensor(spec.mean).view(1, 3, 1, 1)) / torch.tensor(spec.std).view(1, 3, 1, 1)
    assert torch.allclose(m.cnn_renorm(imnet), (raw - 0.5) / 0.5, atol=1e-5)
    m.eval()
    assert m(torch.randn(2, 3, 64, 64)).shape == (2, 3)


def test_hybrid_offline_frozen_cnn_stages_stay_imagenet():
    m = create_model("hybrid_offline", pretrained=True, cnn_freeze_blocks=2, vit_dim=32, vit_depth=1, vit_heads=2,
                     input_size=(64, 64))
    frozen = [m.cnn.conv_stem, m.cnn.bn1, m.cnn.blocks[0], m.cnn.blocks[1]]
    before = {k: v.clone() for k, v in m.cnn.blocks[1].state_dict().items()}
    m.train()
    assert all(not mod.training for mod in frozen) and m.cnn.blocks[2].training
    assert not any(p.requires_grad for mod in frozen for p in mod.parameters())
    assert all(p.requires_grad for p in m.cnn.blocks[2].parameters())
    F.cross_entropy(m(torch.randn(4, 3, 64, 64)), torch.tensor([0, 1, 2, 0])).backward()
    after = m.cnn.blocks[1].state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BatchNorm statistics untouched
    assert m.cnn.blocks[2][0].conv_pw.weight.grad is not None


def test_pretrained_file_option_and_print_config(capsys):
    assert tr.cli_main(["teacher", "--config", "busi_teacher_paper", "--pretrained-file", "branches.pth",
                        "train.epochs=3", "--print-config"]) == 0
    printed = capsys.readouterr().out
    assert "pretrained_file: branches.pth" in printed and "epochs: 3" in printed


@pytest.mark.parametrize("name,kwargs", [
    ("hybrid_offline", {"vit_tokens": "patches", "vit_patch": 16}),
    ("vit_nanoray_offline", {"vit_tokens": "cnn"}),
    ("vit_nanoray_offline", {"vit_tokens": "patches"}),
    ("vit_nanoray_paper", {"vit_name": "vit_tiny_patch16_224"}),
])
def test_teacher_variants_build_and_round_trip(tmp_path, name, kwargs):
    m = create_model(name, class_names=("normal", "pneumonia"), input_size=(64, 64), vit_dim=32, vit_depth=1,
                     vit_heads=2, **kwargs) if "offline" in name else \
        create_model(name, class_names=("normal", "pneumonia"), input_size=(64, 64), **kwargs)
    assert m.sonolens_spec.num_classes == 2 and m.sonolens_spec.mean == (0.485, 0.456, 0.406)
    path = tmp_path / "ckpt.pt"
    torch.save(checkpoint_payload(m, model_name=name, provenance={}), path)
    back = load_checkpoint(path)  # rebuilt from the spec's builder_args, no download
    assert back.sonolens_spec == m.sonolens_spec
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(back(x), m.eval()(x), atol=1e-5)


# --------------------------------------------------------------------------------------------------------
# The training loop
# --------------------------------------------------------------------------------------------------------
def test_train_teacher_end_to_end(teacher_run, dataset):
    _check_run_dir(teacher_run)
    root, split = dataset
    from sonolens.training.data import read_split_csv

    r = ev.evaluate_model(teacher_run / "best.pt", read_split_csv(split, root, "test"), n_boot=50)
    assert r["n"] == 3 and len(r["probs"][0]) == 3  # a teacher checkpoint evaluates like a student's
    t = load_checkpoint(teacher_run / "best.pt")
    assert t.sonolens_spec.arch == "hybrid_offline" and t.sonolens_spec.builder_args["vit_depth"] == 1
    assert t.sonolens_spec.mean == (0.5, 0.5, 0.5)  # this tiny teacher normalises unlike the student


def test_train_baseline_end_to_end(baseline_run):
    rows = _check_run_dir(baseline_run)
    assert all(float(r["train_kd"]) == 0 for r in rows)
    cfg = (baseline_run / "config.yaml").read_text()
    assert "mode: baseline" in cfg and "mobilenetv3_small_100" in cfg
    assert load_checkpoint(baseline_run / "best.pt").sonolens_spec.input_size == (64, 64)


def test_distill_teacher_frozen_and_sees_the_same_batch(dataset, teacher_run, tmp_path, monkeypatch):
    seen: dict[str, list] = {"teacher": [], "student": []}
    holder = {}
    real_load_teacher, real_build_model = tr.load_teacher, tr.build_model

    def load_teacher(*a, **k):
        t = real_load_teacher(*a, **k)
        t.register_forward_pre_hook(lambda mod, inp: seen["teacher"].append(inp[0].detach().clone()))
        holder["teacher"] = t
        return t

    def build_model(*a, **k):
        s = real_build_model(*a, **k)
        s.register_forward_pre_hook(lambda mod, inp: seen["student"].append(inp[0].detach().clone())
                                    if mod.training else None)
        holder["student"] = s
        return s

    monkeypatch.setattr(tr, "load_teacher", load_teacher)
    monkeypatch.setattr(tr, "build_model", build_model)
    out = tmp_path / "distill"
    tr.run("distill", load_config("busi_distill_offline",
                                  _tiny(dataset, out, f"teacher.checkpoint={teacher_run / 'best.pt'}")))
    rows = _check_run_dir(out)
    assert all(float(r["train_kd"]) > 0 for r in rows)
    teacher, student = holder["teacher"], holder["student"]
    # Frozen: no gradients, eval mode, weights and BatchNorm statistics exactly as in its checkpoint.
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    saved = torch.load(teacher_run / "best.pt", map_location="cpu", weights_only=True)["state_dict"]
    assert all(torch.equal(v, saved[k]) for k, v in teacher.state_dict().items())
    # Same augmented batch, each model with its own normalisation (teacher 0.5/0.5, student ImageNet).
    n_train = len(seen["student"])
    assert n_train == 2 * 2  # 9 images, batch 4, drop_last: 2 steps x 2 epochs
    tc, sc = teacher.sonolens_spec, student.sonolens_spec
    for t_in, s_in in zip(seen["teacher"][-n_train:], seen["student"]):
        t_raw = t_in * torch.tensor(tc.std).view(1, 3, 1, 1) + torch.tensor(tc.mean).view(1, 3, 1, 1)
        s_raw = s_in * torch.tensor(sc.std).view(1, 3, 1, 1) + torch.tensor(sc.mean).view(1, 3, 1, 1)
        assert torch.allclose(t_raw, s_raw, atol=1e-5)
        assert t_raw.min() >= -1e-5 and t_raw.max() <= 1 + 1e-5
    prov = load_checkpoint(out / "best.pt").sonolens_spec.provenance
    assert prov["mode"] == "distill" and prov["teacher"]["arch"] == "hybrid_offline"


def test_distill_clean_view_reads_the_teachers_logits_on_runtime_images(dataset, teacher_run, tmp_path,
                                                                        monkeypatch):
    """kd.teacher_view=clean: the teacher never sees an augmented batch; every KD target row is the teacher's
    logits on that training image as the runtime feeds it, for the image's own label."""
    from sonolens.training import losses

    calls: list[tuple[torch.Tensor, torch.Tensor]] = []
    teacher_batches: list[int] = []
    holder = {}
    real_load_teacher = tr.load_teacher

    class RecordingKD(KDLoss):
        def forward(self, s, y, t=None):
            calls.append((t.detach().clone(), y.clone()))
            return super().forward(s, y, t)

    def load_teacher(*a, **k):
        t = real_load_teacher(*a, **k)
        t.register_forward_pre_hook(lambda mod, inp: teacher_batches.append(int(inp[0].shape[0])))
        holder["teacher"] = t
        return t

    monkeypatch.setattr(losses, "KDLoss", RecordingKD)
    monkeypatch.setattr(tr, "load_teacher", load_teacher)
    out = tmp_path / "distill_clean"
    cfg = load_config("busi_distill_offline", _tiny(dataset, out, f"teacher.checkpoint={teacher_run / 'best.pt'}",
                                                    "kd.teacher_view=clean"))
    tr.run("distill", cfg)
    assert all(float(r["train_kd"]) > 0 for r in _check_run_dir(out))
    ri = tr.prepare_run(cfg)
    # The teacher ran on the 9 clean training images and the validation images only — never inside the loop.
    assert sum(teacher_batches) == len(ri.train_samples) + len(ri.val_samples)
    teacher = holder["teacher"]
    spec = teacher.sonolens_spec
    expected = tr.predict_cached(teacher, tr.runtime_resized(ri.train_samples, spec.input_size), spec,
                                 torch.device("cpu"), 4)
    labels = torch.as_tensor([ri.class_names.index(s.label) for s in ri.train_samples])
    assert len(calls) == 2 * 2  # 2 steps x 2 epochs
    for t_logits, y in calls:
        for row, label in zip(t_logits, y):
            match = [i for i in range(len(expected)) if torch.allclose(row, expected[i], atol=1e-5)]
            assert match and all(int(labels[i]) == int(label) for i in match)
    with pytest.raises(ConfigError, match="teacher_view"):
        tr.run("distill", load_config("busi_distill_offline",
                                      _tiny(dataset, tmp_path / "x", f"teacher.checkpoint={teacher_run / 'best.pt'}",
                                            "kd.teacher_view=augmented")))


def test_resume_reproduces_an_uninterrupted_run(dataset, baseline_run, tmp_path, monkeypatch):
    out = tmp_path / "resumed"
    cfg = load_config("busi_baseline", _tiny(dataset, out))
    real_write = tr._write_history

    def crash_after_first_epoch(path, rows):
        real_write(path, rows)
        if len(rows) == 1:
            raise KeyboardInterrupt  # the run dies after epoch 1 was saved

    monkeypatch.setattr(tr, "_write_history", crash_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        tr.run("baseline", cfg)
    monkeypatch.setattr(tr, "_write_history", real_write)
    assert torch.load(out / "last.pt", map_location="cpu", weights_only=False)["epoch"] == 0
    tr.cli_main(["baseline", "--config", "busi_baseline", *_tiny(dataset, out), f"resume={out / 'last.pt'}"])
    rows = _check_run_dir(out)
    ref_rows = _check_run_dir(baseline_run)
    a = torch.load(out / "last.pt", map_location="cpu", weights_only=False)["state_dict"]
    b = torch.load(baseline_run / "last.pt", map_location="cpu", weights_only=False)["state_dict"]
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-5) for k in a)
    assert [r["val_acc"] for r in rows] == [r["val_acc"] for r in ref_rows]


def test_model_input_resizes_and_normalises():
    from sonolens.pipeline.modelfile import ModelSpec

    x = torch.rand(2, 3, 32, 32)
    cfg = ModelSpec(arch="x", class_names=CLASSES, input_size=(16, 16), mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.5))
    y = tr.model_input(x, cfg)
    ref = F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False, antialias=True)
    ref = (ref - torch.tensor(cfg.mean).view(1, 3, 1, 1)) / torch.tensor(cfg.std).view(1, 3, 1, 1)
    assert y.shape == (2, 3, 16, 16) and torch.allclose(y, ref)


# --------------------------------------------------------------------------------------------------------
# One preprocessing: runtime, evaluation and the training loop's validation feed identical tensors
# --------------------------------------------------------------------------------------------------------
PARITY_SPEC_ARGS = {"arch": "x", "class_names": CLASSES, "input_size": (64, 48), "mean": (0.5, 0.4, 0.3),
                    "std": (0.2, 0.25, 0.3)}


def _scans(tmp_path: Path, n: int = 3) -> list[tuple[Path, np.ndarray, tuple[int, int, int, int]]]:
    """``n`` image files of different sizes (saved like the dataset: 3 equal channels) and, for each, the live
    frame a scanner would show: the same pixels as RGB inside a noisy border, at ROI ``(x, y, w, h)``."""
    rng = np.random.default_rng(5)
    out = []
    for i, (h, w) in enumerate([(181, 157), (97, 203), (240, 240)][:n]):
        gray = _image(CLASSES[i % 3], rng, size=max(h, w))[:h, :w]
        path = tmp_path / f"scan{i}.png"
        assert cv2.imwrite(str(path), cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))
        x, y = 23 + i, 41
        frame = rng.integers(0, 60, (h + 80, w + 60, 3), dtype=np.uint8)
        frame[y:y + h, x:x + w] = gray[:, :, None]
        out.append((path, frame, (x, y, w, h)))
    return out


def test_runtime_and_evaluation_preprocess_identically(tmp_path):
    from sonolens.pipeline.modelfile import ModelSpec
    from sonolens.pipeline.preprocess import Preprocessor

    spec = ModelSpec(**PARITY_SPEC_ARGS)
    for path, frame, roi in _scans(tmp_path):
        runtime, got_roi = Preprocessor(spec, roi=roi)(frame)
        evaluation = ev.runtime_input(path, spec)
        assert got_roi == roi and runtime.shape == (1, 3, 64, 48) and runtime.dtype == np.float32
        assert np.array_equal(runtime, evaluation)
        assert runtime.std() > 0.1  # a real picture, not a constant that would match anything


def test_train_validation_pass_feeds_the_runtime_tensors(tmp_path):
    from sonolens.pipeline.modelfile import ModelSpec
    from sonolens.pipeline.preprocess import Preprocessor
    from sonolens.training.data import Sample

    spec = ModelSpec(**PARITY_SPEC_ARGS)
    scans = _scans(tmp_path)

    class Recorder(torch.nn.Module):
        """Records what the validation pass feeds it; predicts nothing useful."""

        def __init__(self):
            super().__init__()
            self.seen: list[torch.Tensor] = []

        def forward(self, x):
            self.seen.append(x.detach().clone())
            return torch.zeros(x.shape[0], len(CLASSES))

    images = tr.runtime_resized([Sample(p, "benign") for p, _, _ in scans], spec.input_size)
    model = Recorder()
    tr.evaluate_cached(model, images, [0, 1, 2], spec, torch.device("cpu"), batch_size=2, class_names=CLASSES)
    fed = torch.cat(model.seen).numpy()
    assert fed.shape == (3, 3, 64, 48) and fed.dtype == np.float32
    for i, (_, frame, roi) in enumerate(scans):
        assert np.array_equal(fed[i:i + 1], Preprocessor(spec, roi=roi)(frame)[0]), i
    with pytest.raises(ValueError, match="runtime_resized"):
        tr.evaluate_cached(model, images[:, :, :32], [0, 1, 2], spec, torch.device("cpu"), 2, CLASSES)


# --------------------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------------------
def test_metrics_match_hand_calculation():
    # 7 images; true: normal x2, benign x2, malignant x3. P(malignant) given per image.
    y = [0, 0, 1, 1, 2, 2, 2]
    pred = [0, 1, 1, 1, 2, 2, 0]
    p_mal = [0.1, 0.2, 0.3, 0.35, 0.9, 0.8, 0.25]
    probs = np.zeros((7, 3))
    for i, (k, pm) in enumerate(zip(pred, p_mal)):
        probs[i, 2] = pm
        rest = [c for c in range(3) if c != 2]
        if k == 2:
            probs[i, rest] = (1 - pm) / 2
        else:
            probs[i, k] = 1 - pm - 0.01
            probs[i, [c for c in rest if c != k][0]] = 0.01
    r = ev.evaluate_predictions(y, probs, CLASSES, n_boot=200, seed=0)
    assert r["n"] == 7 and r["accuracy"] == pytest.approx(5 / 7)
    assert r["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 2]]
    # normal: P = 1/2, R = 1/2; benign: P = 2/3, R = 1; malignant: P = 1, R = 2/3
    f1 = {"normal": 0.5, "benign": 2 * (2 / 3) / (2 / 3 + 1), "malignant": 2 * (2 / 3) / (2 / 3 + 1)}
    for name, val in f1.items():
        assert r["per_class"][name]["f1"] == pytest.approx(val)
    assert r["per_class"]["benign"]["precision"] == pytest.approx(2 / 3)
    assert r["per_class"]["malignant"]["recall"] == pytest.approx(2 / 3)
    assert r["per_class"]["malignant"]["support"] == 3
    assert r["macro_f1"] == pytest.approx(sum(f1.values()) / 3)
    # AUC: malignant scores {0.9, 0.8, 0.25} vs others {0.1, 0.2, 0.3, 0.35}: 4 + 4 + 2 = 10 of 12 pairs
    assert r["auc_malignant"] == pytest.approx(10 / 12)
    for key in ("accuracy_ci95", "macro_f1_ci95", "auc_malignant_ci95"):
        lo, hi = r[key]
        assert lo <= r[key.replace("_ci95", "")] <= hi and lo < hi


def test_metrics_agree_with_sklearn_and_bootstrap_is_seeded():
    from sklearn.metrics import f1_score, roc_auc_score

    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 120)
    probs = rng.dirichlet([1, 1, 1], 120)
    probs[np.arange(120), y] += 0.4
    probs /= probs.sum(1, keepdims=True)
    r = ev.evaluate_predictions(y, probs, CLASSES, n_boot=1000, seed=5)
    assert r["macro_f1"] == pytest.approx(f1_score(y, probs.argmax(1), average="macro"))
    assert r["auc_malignant"] == pytest.approx(roc_auc_score(y == 2, probs[:, 2]))
    again = ev.evaluate_predictions(y, probs, CLASSES, n_boot=1000, seed=5)
    assert again["accuracy_ci95"] == r["accuracy_ci95"] and again["auc_malignant_ci95"] == r["auc_malignant_ci95"]
    assert r["n_boot"] == 1000


def test_metrics_over_a_subset_of_classes():
    # Only benign (1) and malignant (2) present; one benign image is predicted "normal".
    y = [1, 1, 1, 2, 2]
    probs = np.array([[0.1, 0.8, 0.1], [0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.1, 0.2, 0.7], [0.1, 0.6, 0.3]])
    r = ev.evaluate_predictions(y, probs, CLASSES, n_boot=100)
    assert r["classes_present"] == ["benign", "malignant"] and set(r["per_class"]) == {"benign", "malignant"}
    assert r["confusion_labels"] == ["normal", "benign", "malignant"]
    assert r["confusion_matrix"] == [[0, 0, 0], [1, 2, 0], [0, 1, 1]]
    f1_b, f1_m = 2 * (2 / 3) * (2 / 3) / (4 / 3), 2 * 1 * 0.5 / 1.5  # P_b = 2/3, R_b = 2/3; P_m = 1, R_m = 1/2
    assert r["macro_f1"] == pytest.approx((f1_b + f1_m) / 2)
    assert r["accuracy"] == pytest.approx(3 / 5)
    # AUC from P(malignant): positives {0.7, 0.3} vs negatives {0.1, 0.1, 0.3}: 3 + (2 + 0.5) = 5.5 of 6
    assert r["auc_malignant"] == pytest.approx(5.5 / 6)


def test_eval_onnx_and_checkpoint_agree(dataset, baseline_run, tmp_path):
    root, split = dataset
    ckpt = baseline_run / "best.pt"
    onnx_path = tmp_path / "student.onnx"
    export_onnx(load_checkpoint(ckpt), onnx_path)
    from sonolens.training.data import read_split_csv

    samples = read_split_csv(split, root, ["val", "test"])
    a = ev.evaluate_model(onnx_path, samples, n_boot=100)
    b = ev.evaluate_model(ckpt, samples, n_boot=100)
    assert np.allclose(a["probs"], b["probs"], atol=1e-4)
    for key in ("accuracy", "macro_f1", "confusion_matrix", "auc_malignant", "accuracy_ci95"):
        assert a[key] == b[key], key
    # The checkpoint path preprocesses like the runtime: same probabilities as a hand-made runtime input.
    from sonolens.pipeline.engines import OnnxEngine
    from sonolens.pipeline.preprocess import preprocess_image

    engine = OnnxEngine(onnx_path)
    gray = cv2.cvtColor(cv2.imread(str(samples[0].path)), cv2.COLOR_BGR2GRAY)
    logits, _ = engine.run(preprocess_image(gray, engine.meta))
    assert np.allclose(ev._softmax(logits.astype(np.float64)), b["probs"][0], atol=1e-4)


def test_eval_cli_writes_json_and_png_and_handles_class_subsets(dataset, baseline_run, tmp_path):
    root, split = dataset
    out_json, out_png = tmp_path / "m.json", tmp_path / "cm.png"
    rc = ev.cli_main(["--model", str(baseline_run / "best.pt"), "--data", str(root), "--split-file", str(split),
                      "--split", "test", "--json", str(out_json), "--png", str(out_png), "--n-boot", "200"])
    assert rc == 0 and out_png.stat().st_size > 1000
    r = json.loads(out_json.read_text())
    for key in ("n", "accuracy", "accuracy_ci95", "macro_f1", "per_class", "confusion_matrix", "auc_malignant"):
        assert key in r
    assert r["n"] == 3
    # A folder with only benign/ and malignant/ (e.g. another dataset): metrics over those two classes.
    sub = tmp_path / "two_classes"
    for label in ("benign", "malignant"):
        (sub / label).mkdir(parents=True)
        for f in (root / label).glob("*.png"):
            (sub / label / f.name).write_bytes(f.read_bytes())
    rc = ev.cli_main(["--model", str(baseline_run / "best.pt"), "--data", str(sub), "--json", str(out_json),
                      "--n-boot", "100"])
    r = json.loads(out_json.read_text())
    assert rc == 0 and r["n"] == 10 and r["classes_present"] == ["benign", "malignant"]
    assert set(r["per_class"]) == {"benign", "malignant"}
    from sklearn.metrics import f1_score

    pred = np.asarray(r["probs"]).argmax(1)
    assert r["macro_f1"] == pytest.approx(f1_score(r["y_true"], pred, labels=[1, 2], average="macro",
                                                   zero_division=0))
    # Classes the model does not know are refused with one line.
    (sub / "cyst").mkdir()
    (sub / "cyst" / "c.png").write_bytes((root / "benign" / "benign (0).png").read_bytes())
    with pytest.raises(ConfigError, match="cyst"):
        ev.cli_main(["--model", str(baseline_run / "best.pt"), "--data", str(sub)])


@pytest.mark.slow
def test_same_config_runs_under_torchrun_ddp(dataset, tmp_path):
    """Two CPU processes (gloo) under torchrun: DistributedSampler, all-reduced stats, rank 0 writes."""
    import os
    import subprocess
    import sys

    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "sonolens", "train", "baseline", "--config", "busi_baseline", *_tiny(dataset, out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    _check_run_dir(out)
    assert json.loads((out / "env.json").read_text())["world_size"] == 2
    assert load_checkpoint(out / "best.pt").sonolens_spec.input_size == (64, 64)


def test_sensitivity_specificity_and_auc_for_any_positive_class():
    from sonolens.training.evaluate import evaluate_predictions

    # 4 pneumonia (3 called), 4 normal (1 called pneumonia)
    y = [1, 1, 1, 1, 0, 0, 0, 0]
    p1 = [0.9, 0.8, 0.7, 0.4, 0.6, 0.3, 0.2, 0.1]
    probs = np.array([[1 - v, v] for v in p1])
    r = evaluate_predictions(y, probs, ("normal", "pneumonia"), n_boot=200, positive="pneumonia")
    assert r["sensitivity"] == pytest.approx(0.75) and r["specificity"] == pytest.approx(0.75)
    # AUC: of 16 positive/negative pairs, only (0.4 vs 0.6) is mis-ordered
    assert r["auc_positive"] == pytest.approx(15 / 16) and r["auc_malignant"] is None
    lo, hi = r["sensitivity_ci95"]
    assert 0 <= lo <= 0.75 <= hi <= 1


def test_eval_accepts_the_bundled_model_names_run_and_view_accept(tmp_path):
    """``sonolens eval --model busi`` evaluates the installed bundled file, as ``run --model busi`` runs it."""
    from sonolens.pipeline.engines import bundled_model_path

    path = bundled_model_path("busi")
    if path is None:
        pytest.skip("the bundled BUSI model is not installed")
    assert ev.resolve_model("busi") == path and ev.resolve_model("chest-xray") == bundled_model_path("chest-xray")
    two = ev.resolve_model("busi-uclm")  # the two-hospital student, bundled beside the default
    assert two == bundled_model_path("busi-uclm") and two.name == "busi_uclm_student.onnx" and two.is_file()
    img = tmp_path / "benign" / "a.png"
    img.parent.mkdir()
    cv2.imwrite(str(img), np.random.default_rng(0).integers(0, 255, (120, 160), dtype=np.uint8))
    from sonolens.training.data import read_class_folders

    samples = read_class_folders(tmp_path)
    by_name = ev.evaluate_model("busi", samples, n_boot=10)
    by_path = ev.evaluate_model(path, samples, n_boot=10)
    assert np.array_equal(by_name["probs"], by_path["probs"])
    with pytest.raises(ModelError, match="not a file, and not a bundled model name"):
        ev.evaluate_model(tmp_path / "nope.onnx", samples, n_boot=10)


def test_checkpoints_name_every_dataset_of_a_multi_dataset_split_and_cite_each():
    from sonolens.models.onnx_export import data_citation

    union_cfg = {"data": {"root": "../shared/datasets", "split_csv": "training/split_csv/busi_uclm.csv"}}
    union = tr.data_provenance(union_cfg, 1024, 146)
    assert union["dataset"] == "bus_uclm+busi" and union["split"] == "busi_uclm.csv"
    assert (union["train_n"], union["val_n"]) == (1024, 146) and len(union["split_sha256"]) == 16
    one = tr.data_provenance({"data": {"root": "../shared/datasets/busi", "split_csv": "training/split_csv/busi.csv"}},
                             546, 78)
    assert one["dataset"] == "busi"
    assert tr.data_provenance({"data": {"root": "x/busi", "split_csv": None}}, 1, 1)["split"] == "folders"
    cite = data_citation("bus_uclm+busi")
    assert "Al-Dhabyani" in cite and "Vallez" in cite
    assert data_citation("busi+unknown") is None
