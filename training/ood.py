"""Know when the model does not know: fitting the out-of-domain gate and the temperature, and the image sets.

The score itself lives inside the ONNX graph (``models.ood_graph``); this module decides what goes into it:

* **features** — ``Extractor`` runs the model file with its feature tensors exposed as extra outputs
  (``models.ood_graph.with_outputs``), in ONNX Runtime with the runtime's session options, batch 1, on inputs made
  by the runtime's own preprocessing: ``pipeline.preprocess.preprocess_image`` for every still, and for every clip
  frame a ``pipeline.preprocess.Preprocessor`` (the ROI detected over the first frames, as ``sonolens run`` does);
* **candidates** (``candidates(adapter)``, from the student's adapter stages; named ``METHOD[k]@FEATURE:STAT,…``
  by ``parse_candidate``) — ``fit_gate`` fits
  each on *training* features only: Mahalanobis with class means and one shared, Ledoit-Wolf-shrunk covariance
  (Lee et al. 2018) on the classifier's vectors or on the channel mean/std of early stages (their feature ensemble),
  k-NN cosine distance (Sun et al. 2022), energy (Liu et al. 2020), max-softmax (Hendrycks & Gimpel 2017);
* **threshold** — ``choose_threshold``: a quantile of the in-domain *validation* scores (``target_flagged``);
* **temperature** — ``training.calibrate.fit_temperature`` on the validation split's logits;
* ``attach_gate`` writes score, threshold and temperature into a model file (``ModelSpec.ood``,
  ``ModelSpec.temperature``); ``sonolens fit-ood`` is its command line (``training.ood_cli``), and an export script can
  call ``fit_and_attach`` directly after ``models.onnx_export.export_onnx``.

The image sets (``suite_sets``) name what ``sonolens ood-eval`` (``training.ood_eval``) measures for each model
dataset: in-domain splits, far out-of-domain sets (other organs, other modalities, photographs, noise) and sets only
reported. Selection sets and report sets are kept apart where the data allow it (validation vs test split; other
photograph crops and noise seeds), see ``suite_sets``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from sonolens.pipeline.errors import ConfigError, ModelError
from sonolens.pipeline.modelfile import ModelSpec

# what an image set yields: (model input float32 [1, 3, H, W], group id, class index or None)
Item = tuple[np.ndarray, str, "int | None"]
DEFAULT_TARGET_FLAGGED = 0.02

# ------------------------------------------------------------------------------------------------------------
# Image sets
# ------------------------------------------------------------------------------------------------------------
PHOTOS = ("astronaut", "brick", "camera", "cat", "coffee", "coins", "grass", "gravel", "hubble_deep_field", "moon",
          "rocket", "clock", "text", "page", "cell", "immunohistochemistry", "retina", "microaneurysms",
          "motorcycle_left")
NOISE_KINDS = ("uniform", "gaussian", "smooth", "salt_pepper", "constant", "speckle")


@dataclass
class ImageSet:
    """A named set of model inputs, produced lazily (``items(spec)``) so that only features are kept in memory.

    ``role``: ``in`` (the model's own data: threshold and calibration), ``far`` (another organ, modality or no
    image at all: must be flagged), ``report`` (measured, with or without a target: an external breast set, a second
    hospital's test rows, simulations);
    ``clustered``: items of one group (a clip) are not independent, so CIs resample whole groups.
    """

    name: str
    role: str
    make: Callable[[ModelSpec], Iterator[Item]]
    description: str = ""
    clustered: bool = False
    target: str = ""
    report_only: bool = False  # read only for the report, never to choose (the breast issue's non-breast clips)

    def items(self, spec: ModelSpec) -> Iterator[Item]:
        return self.make(spec)


def _images(paths: Sequence[Path], labels: Sequence[int | None] | None = None) -> Callable[[ModelSpec], Iterator[Item]]:
    def make(spec: ModelSpec) -> Iterator[Item]:
        from sonolens.pipeline.preprocess import preprocess_image

        from .data import load_gray

        for i, p in enumerate(paths):
            yield preprocess_image(load_gray(p), spec), str(p), (None if labels is None else labels[i])
    return make


def split_set(name: str, role: str, root: Path, split_csv: Path, split: str | Sequence[str],
              class_names: Sequence[str] | None = None, description: str = "", target: str = "",
              source: str | None = None) -> ImageSet:
    """Images of a split CSV; labels are indices into ``class_names`` when given (for calibration); ``source``
    keeps only the rows of one dataset folder (``source_of``) of a multi-dataset split."""
    from .data import read_split_csv

    samples = [s for s in read_split_csv(split_csv, root, split) if source is None or source_of(str(s.path)) == source]
    index = {c: i for i, c in enumerate(class_names or ())}
    labels = [index.get(s.label) for s in samples] if class_names else None
    return ImageSet(name, role, _images([s.path for s in samples], labels),
                    description or f"{source or Path(root).name} {split} split ({len(samples)} images)", target=target)


def folder_set(name: str, role: str, root: Path, class_names: Sequence[str] | None = None,
               only: Sequence[str] | None = None, description: str = "", target: str = "") -> ImageSet:
    """Every image under ``root/<class>/`` (masks excluded), optionally only the classes ``only``."""
    from .data import read_class_folders

    samples = [s for s in read_class_folders(root) if only is None or s.label in only]
    index = {c: i for i, c in enumerate(class_names or ())}
    labels = [index.get(s.label) for s in samples] if class_names else None
    return ImageSet(name, role, _images([s.path for s in samples], labels),
                    description or f"{Path(root).name} ({len(samples)} images)", target=target)


def clip_frames(path: Path, spec: ModelSpec, stride: int = 1, roi_frames: int = 8) -> Iterator[np.ndarray]:
    """Model inputs of every ``stride``-th frame of a clip, preprocessed as the runtime does: one
    ``Preprocessor`` per clip that sees *every* frame (the automatic ROI settles over the first ``roi_frames``)."""
    from sonolens.pipeline.preprocess import Preprocessor
    from sonolens.pipeline.sources.video import VideoSource

    pre = Preprocessor(spec, roi_frames=roi_frames)
    with VideoSource(path) as src:
        src.open()
        for i, raw in enumerate(src.frames()):
            x, _roi = pre(raw.pixels)
            if i % stride == 0 and x is not None:
                yield x


def clips_set(name: str, role: str, paths: Sequence[Path], description: str = "", stride: int = 1,
              target: str = "", report_only: bool = False) -> ImageSet:
    paths = sorted(paths)
    if not paths:
        raise ConfigError(f"{name}: no clips found")

    def make(spec: ModelSpec) -> Iterator[Item]:
        for p in paths:
            for x in clip_frames(p, spec, stride):
                yield x, p.name, None
    return ImageSet(name, role, make, description or f"{len(paths)} clips, every frame", clustered=True,
                    target=target, report_only=report_only)


def photo_pixels() -> list[tuple[str, np.ndarray]]:
    """The photographs shipped inside scikit-image (``skimage.data``; no download), as uint8 grey or RGB."""
    try:
        import skimage.data as sd
    except ImportError as exc:
        raise ConfigError("natural photos need scikit-image: pip install 'sonolens[train]'") from exc
    out = []
    for name in PHOTOS:
        img = sd.stereo_motorcycle()[0] if name == "motorcycle_left" else getattr(sd, name)()
        img = np.asarray(img)
        if img.dtype != np.uint8:
            img = (img.astype(np.float64) / max(float(img.max()), 1.0) * 255).astype(np.uint8)
        if img.ndim == 3 and img.shape[2] == 4:
            img = img[:, :, :3]
        out.append((name, np.ascontiguousarray(img)))
    return out


def photos_set(name: str, role: str, crops: int = 0, seed: int = 0, target: str = "") -> ImageSet:
    """``skimage.data`` photographs: whole (``crops=0``, the report set) or ``crops`` random crops of 40-80 % of
    each side per photo (the selection set: other views of the same photographs)."""
    def make(spec: ModelSpec) -> Iterator[Item]:
        from sonolens.pipeline.preprocess import preprocess_image

        rng = np.random.default_rng(seed)
        for pname, img in photo_pixels():
            if crops <= 0:
                yield preprocess_image(img, spec), pname, None
                continue
            h, w = img.shape[:2]
            for _ in range(crops):
                ch, cw = (max(8, int(s * rng.uniform(0.4, 0.8))) for s in (h, w))
                y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
                yield preprocess_image(img[y:y + ch, x:x + cw], spec), pname, None
    desc = (f"{len(PHOTOS)} scikit-image photographs" + (f", {crops} random crops each (seed {seed})" if crops
                                                          else ", whole"))
    return ImageSet(name, role, make, desc, clustered=crops > 0, target=target)


def noise_frame(kind: str, rng: np.random.Generator, size: tuple[int, int] = (480, 640)) -> np.ndarray:
    """One uint8 grey frame of ``kind`` (``NOISE_KINDS``): what a dead, unplugged or mis-set source shows."""
    import cv2

    h, w = size
    if kind == "uniform":
        return rng.integers(0, 256, size, dtype=np.uint8)
    if kind == "gaussian":
        return np.clip(rng.normal(rng.uniform(60, 190), rng.uniform(20, 70), size), 0, 255).astype(np.uint8)
    if kind == "smooth":
        sigma = float(rng.uniform(2, 30))
        f = cv2.GaussianBlur(rng.standard_normal(size).astype(np.float32), (0, 0), sigma)
        f = (f - f.min()) / max(float(np.ptp(f)), 1e-6)
        return (f * 255).astype(np.uint8)
    if kind == "salt_pepper":
        img = np.full(size, int(rng.integers(0, 256)), np.uint8)
        mask = rng.random(size) < rng.uniform(0.05, 0.5)
        img[mask] = rng.choice(np.array([0, 255], np.uint8), int(mask.sum()))
        return img
    if kind == "constant":
        return np.full(size, int(rng.integers(0, 256)), np.uint8)
    if kind == "speckle":  # Rayleigh speckle over blocky brightness: the texture of ultrasound without anatomy
        coarse = rng.random((h // 16 + 1, w // 16 + 1))
        base = np.kron(coarse, np.ones((16, 16)))[:h, :w]
        return np.clip(base * rng.rayleigh(0.5, (h, w)) * 255, 0, 255).astype(np.uint8)
    raise ValueError(f"unknown noise kind {kind!r}")


def noise_set(name: str, role: str, per_kind: int = 20, seed: int = 0, target: str = "") -> ImageSet:
    def make(spec: ModelSpec) -> Iterator[Item]:
        from sonolens.pipeline.preprocess import preprocess_image

        rng = np.random.default_rng(seed)
        for kind in NOISE_KINDS:
            for _ in range(per_kind):
                yield preprocess_image(noise_frame(kind, rng), spec), kind, None
    return ImageSet(name, role, make, f"{per_kind} frames each of {', '.join(NOISE_KINDS)} (seed {seed})",
                    target=target)


# ------------------------------------------------------------------------------------------------------------
# Suites: which sets measure which model
# ------------------------------------------------------------------------------------------------------------
def shared_root(given: str | os.PathLike | None = None) -> Path:
    """``--shared``, else ``$SONOLENS_SHARED``, else ``../shared`` beside the repository (or the working dir)."""
    if given:
        return Path(given)
    if os.environ.get("SONOLENS_SHARED"):
        return Path(os.environ["SONOLENS_SHARED"])
    here = Path(__file__).resolve().parents[1] / ".." / "shared"
    return here.resolve() if here.is_dir() else Path.cwd().parent / "shared"


def repo_file(rel: str) -> Path:
    """A file of the source tree (split CSVs ship inside the package too)."""
    p = Path(__file__).resolve().parent / rel
    return p if p.exists() else Path(__file__).resolve().parents[1] / rel


SPLITS = {"busi": ("datasets/busi", "split_csv/busi.csv"),
          "bus_uclm+busi": ("datasets", "split_csv/busi_uclm.csv"),  # the two-hospital breast model
          "chest_xray_kermany": ("datasets/chest_xray_kermany", "split_csv/chest_xray.csv")}
BREAST = ("busi", "bus_uclm+busi")
IN_DOMAIN_NAME = {"busi": "BUSI", "bus_uclm+busi": "BUSI + BUS-UCLM"}


def dataset_of(spec: ModelSpec) -> str:
    ds = str(spec.provenance.get("dataset", ""))
    if ds not in SPLITS:
        raise ConfigError(f"model dataset {ds!r} has no image suite (known: {', '.join(SPLITS)})")
    return ds


def training_split(spec: ModelSpec, shared: Path) -> tuple[Path, Path]:
    """(dataset root, split CSV) of the model's training data."""
    root, csv = SPLITS[dataset_of(spec)]
    return shared / root, repo_file(csv)


# The gate's reference: the images whose features define "in domain". For a breast model, breast ultrasound from
# every scanner sonolens may train on (BUSI and BUS-UCLM, the union split's train/val rows), whatever the
# classifier itself was trained on; the external breast set is never among them.
GATE_SPLITS = {"busi": SPLITS["bus_uclm+busi"], "bus_uclm+busi": SPLITS["bus_uclm+busi"],
               "chest_xray_kermany": SPLITS["chest_xray_kermany"]}


def gate_split(spec: ModelSpec, shared: Path) -> tuple[Path, Path]:
    """(dataset root, split CSV) the gate of a model is fitted (train rows) and thresholded (val rows) on."""
    root, csv = GATE_SPLITS[dataset_of(spec)]
    return shared / root, repo_file(csv)


def source_of(item: str) -> str:
    """The dataset an image of a class-folder dataset comes from: ``…/<dataset>/<class>/<file>`` → ``dataset``."""
    return Path(item).parents[1].name


def suite_sets(spec: ModelSpec, shared: Path, stage: str) -> list[ImageSet]:
    """The image sets for a model (by ``provenance.dataset``) at ``stage``:

    * ``select`` — the in-domain **validation** rows of the gate's reference split (``gate_split``: for a breast
      model BUSI + BUS-UCLM, two scanners), and far sets used to choose the method: the other modality's
      validation/training images, all lung and ocular clips, photograph *crops* (seed 1), noise (seed 1);
    * ``report`` — the model's own **test** split first (role ``in``), for a breast model trained on BUSI alone
      also BUS-UCLM's test rows (the gate's second scanner, same target), far sets (other modality's test split,
      the same clips — there are only seven —, whole photographs, noise seed 2) and the sets reported without a
      target.

    Nothing of the external breast set (``breast_lesions_usg``) is in ``select``.
    """
    ds = dataset_of(spec)
    names = tuple(spec.class_names)
    videos = shared / "videos"
    busi, chest = shared / "datasets/busi", shared / "datasets/chest_xray_kermany"
    busi_csv, chest_csv = repo_file("split_csv/busi.csv"), repo_file("split_csv/chest_xray.csv")
    # report_only: the breast issue reads the seven non-breast clips only for the report; the cross-hospital
    # rule (``select_cross_hospital``) does not look at them, the older AUROC rule does (``ood_eval``)
    lung = clips_set("lung ultrasound clips", "far", list(videos.glob("covid-blues_*.mp4")),
                     "COVID-BLUES lung POCUS, 4 clips, every frame", target="AUROC >= 0.95", report_only=True)
    eye = clips_set("ocular ultrasound clips", "far", list(videos.glob("itkpocus_*.mp4")),
                    "ITKPOCUS ocular, 3 clips, every frame", target="AUROC >= 0.95", report_only=True)
    if ds in BREAST:
        own_root, own_csv = training_split(spec, shared)
        ref_root, ref_csv = gate_split(spec, shared)
        if stage == "select":
            return [split_set("BUSI + BUS-UCLM val", "in", ref_root, ref_csv, "val", names),
                    split_set("chest X-rays (Kermany val)", "far", chest, chest_csv, "val", target="AUROC >= 0.95"),
                    lung, eye,
                    photos_set("natural photos (crops)", "far", crops=4, seed=1, target="AUROC >= 0.95"),
                    noise_set("noise frames", "far", per_kind=10, seed=1, target="AUROC >= 0.95")]
        samples = sorted((Path(__file__).resolve().parents[1] / "assets/sample_videos").glob("*.mp4"))
        sets = [split_set(f"{IN_DOMAIN_NAME[ds]} test", "in", own_root, own_csv, "test", names,
                          target="<= 5 % flagged"),
                folder_set("BrEaST-Lesions-USG (external, lesions)", "report", shared / "datasets/breast_lesions_usg",
                           names, only=("benign", "malignant"),
                           description="external breast test set: 252 lesion images (154 benign, 98 malignant), "
                                       "Polish centres, reported only", target="<= 10 % flagged"),
                split_set("chest X-rays (Kermany test)", "far", chest, chest_csv, "test", target="AUROC >= 0.95"),
                lung, eye,
                photos_set("natural photos", "far", target="AUROC >= 0.95"),
                noise_set("noise frames", "far", per_kind=20, seed=2, target="AUROC >= 0.95")]
        if (own_root, own_csv) != (ref_root, ref_csv):  # BUSI-only classifier: the gate's other scanner
            sets.insert(1, split_set("BUS-UCLM test (the gate's second scanner)", "report", ref_root, ref_csv, "test",
                                     names, target="<= 5 % flagged", source="bus_uclm"))
        if samples:
            sets.append(clips_set("simulated sample clips", "report", samples,
                                  f"assets/sample_videos, {len(samples)} phantom clips, every frame"))
        return sets
    # chest X-ray model
    if stage == "select":
        return [split_set("Kermany val", "in", chest, chest_csv, "val", names),
                split_set("breast ultrasound (BUSI train)", "far", busi, busi_csv, "train", target="AUROC >= 0.95"),
                lung,
                photos_set("natural photos (crops)", "far", crops=4, seed=1, target="AUROC >= 0.95"),
                noise_set("noise frames", "far", per_kind=10, seed=1, target="AUROC >= 0.95")]
    return [split_set("Kermany test", "in", chest, chest_csv, "test", names, target="<= 5 % flagged"),
            split_set("breast ultrasound (BUSI test)", "far", busi, busi_csv, "test", target="AUROC >= 0.95"),
            folder_set("breast ultrasound (BrEaST-Lesions-USG)", "far", shared / "datasets/breast_lesions_usg",
                       description="256 images of the external breast set", target="AUROC >= 0.95"),
            lung,
            photos_set("natural photos", "far", target="AUROC >= 0.95"),
            noise_set("noise frames", "far", per_kind=20, seed=2, target="AUROC >= 0.95")]


# ------------------------------------------------------------------------------------------------------------
# Features
# ------------------------------------------------------------------------------------------------------------
def all_keys(adapter: Any = None) -> list[str]:
    """Every ``feature:stat`` the candidates (``candidates(adapter)``) read, and the logits."""
    return list(dict.fromkeys([k for c in candidates(adapter) for k in c.keys] + ["logits:vector"]))


@dataclass
class SetFeatures:
    """What one model produced on one ``ImageSet``: per item the statistic of every requested ``feature:stat``
    key (``feats``), the graph's own ``ood_score`` (``None`` for a file without one), group ids and labels."""

    name: str
    role: str
    feats: dict[str, np.ndarray]
    ood: np.ndarray | None
    groups: list[str]
    labels: list[int | None]
    clustered: bool = False
    description: str = ""
    target: str = ""
    report_only: bool = False

    @property
    def logits(self) -> np.ndarray:
        return self.feats["logits:vector"]

    @property
    def n(self) -> int:
        return len(self.groups)

    def subset(self, keep: Sequence[bool] | np.ndarray) -> SetFeatures:
        """The items where ``keep`` is true (same name, role and target)."""
        m = np.asarray(keep, bool)
        return replace(self, feats={k: v[m] for k, v in self.feats.items()},
                       ood=None if self.ood is None else self.ood[m],
                       groups=[g for g, k in zip(self.groups, m) if k], labels=[y for y, k in zip(self.labels, m) if k])

    def sources(self) -> list[str]:
        """``source_of`` every item (the dataset folder an image comes from)."""
        return [source_of(g) for g in self.groups]


def concat_features(*sets: SetFeatures) -> SetFeatures:
    """The items of ``sets`` one after the other (name, role and target of the first)."""
    first = sets[0]
    oods = [s.ood for s in sets]
    return replace(first, feats={k: np.concatenate([s.feats[k] for s in sets]) for k in first.feats},
                   ood=None if any(o is None for o in oods) else np.concatenate([o for o in oods if o is not None]),
                   groups=[g for s in sets for g in s.groups], labels=[y for s in sets for y in s.labels])


class Extractor:
    """ONNX Runtime on a model file with the tensors of ``keys`` exposed as extra outputs; batch 1 and the
    runtime's session options (``pipeline.engines.OnnxEngine``), so features are those of the graph users run."""

    def __init__(self, model_path: str | os.PathLike, keys: Sequence[str] | None = None, threads: int = 1):
        import onnx
        import onnxruntime as ort

        from sonolens.models.adapters import adapter_for_arch
        from sonolens.models.onnx_export import read_spec
        from sonolens.models.ood_graph import SCORE_OUTPUT, feature_tensors, with_outputs

        self.path = Path(model_path)
        self.spec = read_spec(self.path)
        proto = onnx.load(str(self.path))
        self.tensors = feature_tensors(proto)
        self.adapter = adapter_for_arch(self.spec.arch)
        self.keys = list(dict.fromkeys(list(keys or all_keys(self.adapter)) + ["logits:vector"]))
        self.key_tensor = {}
        for key in self.keys:
            feature = key.split(":")[0]
            if feature not in self.tensors:
                raise ModelError(f"{self.path}: the graph has no {feature!r} tensor")
            self.key_tensor[key] = self.tensors[feature]
        self.has_score = any(o.name == SCORE_OUTPUT for o in proto.graph.output)
        self.outputs = list(dict.fromkeys(self.key_tensor.values())) + ([SCORE_OUTPUT] if self.has_score else [])
        aug = with_outputs(proto, self.outputs)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(aug.SerializeToString(), sess_options=opts,
                                            providers=["CPUExecutionProvider"])

    def run(self, x: np.ndarray) -> tuple[dict[str, np.ndarray], float | None]:
        """Statistics of every key for one input ``x`` [1, 3, H, W], and the graph's ``ood_score`` (or None)."""
        from sonolens.models.ood_graph import SCORE_OUTPUT, tensor_stat

        out = dict(zip(self.outputs, self.session.run(self.outputs, {"image": x})))
        stats = {k: tensor_stat(out[t], k.split(":")[1])[0] for k, t in self.key_tensor.items()}
        return stats, (float(out[SCORE_OUTPUT][0]) if self.has_score else None)

    def features(self, image_set: ImageSet) -> SetFeatures:
        rows: list[dict[str, np.ndarray]] = []
        scores: list[float | None] = []
        groups: list[str] = []
        labels: list[int | None] = []
        for x, group, label in image_set.items(self.spec):
            stats, score = self.run(x)
            rows.append(stats)
            scores.append(score)
            groups.append(group)
            labels.append(label)
        if not rows:
            raise ConfigError(f"{image_set.name}: no images")
        feats = {k: np.stack([r[k] for r in rows]) for k in self.keys}
        return SetFeatures(image_set.name, image_set.role, feats,
                           np.asarray(scores, np.float64) if self.has_score else None, groups, labels,
                           clustered=image_set.clustered, description=image_set.description, target=image_set.target,
                           report_only=image_set.report_only)


# ------------------------------------------------------------------------------------------------------------
# Candidates and fitting
# ------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Candidate:
    """A score to fit: ``method``, the ``feature:stat`` keys of its parts, ``k`` (k-NN). ``name`` is the
    parseable form ``METHOD[k]@KEY,KEY…`` (``parse_candidate``)."""

    method: str
    keys: tuple[str, ...]
    k: int = 1

    @property
    def name(self) -> str:
        return f"{self.method}{self.k if self.method == 'knn' else ''}@{','.join(self.keys)}"


def parse_candidate(text: str, adapter: Any = None) -> Candidate:
    """``mahalanobis@stem:mean_std,blocks.1:mean_std``, ``knn5@prelogits:vector``, ``energy`` / ``msp``. The
    features are checked against ``adapter``'s (``models.adapters``; default: any registered student's)."""
    from sonolens.models.adapters import list_students, student_adapter
    from sonolens.models.ood_graph import HEAD_FEATURES, METHODS, STATS

    head, _, rest = text.partition("@")
    method = head.rstrip("0123456789")
    k = int(head[len(method):] or 1)
    if method not in METHODS:
        raise ConfigError(f"unknown out-of-domain method in {text!r} (known: {', '.join(METHODS)})")
    keys = tuple(rest.split(",")) if rest else ("logits:vector",)
    adapters = [adapter] if adapter is not None else [student_adapter(a) for a in list_students()]
    features = list(dict.fromkeys(f for ad in adapters for f in ad.stage_names)) + list(HEAD_FEATURES)
    for key in keys:
        feature, _, stat = key.partition(":")
        if feature not in features or stat not in STATS:
            raise ConfigError(f"bad feature {key!r} in {text!r}: FEATURE:STAT with FEATURE in {', '.join(features)} "
                              f"and STAT in {', '.join(STATS)}")
    if method in ("energy", "msp") and keys != ("logits:vector",):
        raise ConfigError(f"{method} reads the logits only")
    return Candidate(method, keys, k)


def _stats(*stages: str, stats: Sequence[str] = ("mean_std",)) -> tuple[str, ...]:
    return tuple(f"{s}:{st}" for s in stages for st in stats)


# Which of the adapter's first ``gate_stages`` stages (by position: 0 = the stem) the channel-correlation
# candidates combine, alone and with the log standard deviations.
_CORR_GROUPS = ((0,), (1,), (2,), (3,), (0, 3), (1, 3), (0, 1, 2), (0, 2, 3), (1, 2, 3), (0, 1, 2, 3))
_CORR_LOGSTD_GROUPS = ((0, 3), (1, 3), (0, 2, 3), (1, 2, 3), (0, 1, 2, 3))
_MEAN_STD_GROUPS = ((0,), (1,), (2,), (3,), (0, 1), (0, 2), (0, 1, 2), (0, 1, 2, 3))


def candidates(adapter: Any = None) -> tuple[Candidate, ...]:
    """The table ``sonolens ood-eval`` measures on a student (``adapter``; default: the default student). Scores on
    the classifier's own features first, then Lee et al.'s feature ensemble over the channel statistics of the
    adapter's early stages: mean/std, then channel correlations (Sastry & Oore's Gram matrices: blind to each
    channel's gain and offset, where breast scanners differ most), alone and with the log standard deviations,
    and mean/std over every stage."""
    from sonolens.models.adapters import DEFAULT_STUDENT, student_adapter

    adapter = adapter or student_adapter(DEFAULT_STUDENT)
    early = adapter.stage_names[: adapter.gate_stages]

    def groups(table: tuple[tuple[int, ...], ...]) -> list[tuple[str, ...]]:
        picked = [tuple(early[i] for i in g) for g in table if max(g) < len(early)]
        return list(dict.fromkeys(picked))

    return (
        Candidate("msp", ("logits:vector",)),
        Candidate("energy", ("logits:vector",)),
        Candidate("mahalanobis", ("pooled:vector",)),
        Candidate("mahalanobis", ("prelogits:vector",)),
        Candidate("knn", ("pooled:vector",), k=5),
        Candidate("knn", ("prelogits:vector",), k=1),
        Candidate("knn", ("prelogits:vector",), k=5),
        *(Candidate("mahalanobis", _stats(*g)) for g in groups(_MEAN_STD_GROUPS)),
        Candidate("mahalanobis", _stats(*adapter.stage_names)),
        *(Candidate("mahalanobis", _stats(*g, stats=("corr",))) for g in groups(_CORR_GROUPS)),
        *(Candidate("mahalanobis", _stats(*g, stats=("corr", "logstd"))) for g in groups(_CORR_LOGSTD_GROUPS)),
    )


DEFAULT_CANDIDATE = "mahalanobis@stem:corr,stem:logstd,blocks.2:corr,blocks.2:logstd"  # ood-eval's pick for busi


def ledoit_wolf(x: np.ndarray) -> tuple[np.ndarray, float]:
    """Ledoit-Wolf shrunk covariance of already centred rows ``x`` [n, p] (the analytic shrinkage of Ledoit & Wolf
    2004, as in scikit-learn): ``(1 - s)·S + s·tr(S)/p·I``. Returns (covariance, s)."""
    n, p = x.shape
    s = x.T @ x / n
    mu = np.trace(s) / p
    x2 = x ** 2
    beta_ = float((x2.T @ x2).sum())
    delta_ = float((s ** 2).sum())
    beta = (beta_ / n - delta_) / (n * p) if n > 1 else 0.0
    delta = (delta_ - 2 * mu * np.trace(s) + p * mu ** 2) / p
    beta = min(beta, delta)
    shrink = 0.0 if beta <= 0 or delta <= 0 else float(beta / delta)
    return (1 - shrink) * s + shrink * mu * np.eye(p), shrink


def fit_mahalanobis_part(x: np.ndarray, y: Sequence[int], key: str):
    """Class means and one shared (within-class, Ledoit-Wolf-shrunk) covariance of training statistics ``x``
    [N, D]; Σ⁻¹ = W Wᵀ with W = eigenvectors / √eigenvalues. The part is standardised by the mean and standard
    deviation of the training images' own scores, so parts of different layers add up on one scale."""
    from sonolens.models.ood_graph import ScorePart, part_score

    x = np.asarray(x, np.float64)
    labels = np.asarray(y, np.int64)
    present = sorted(set(labels.tolist()))
    means = np.stack([x[labels == c].mean(axis=0) for c in present])
    cov, shrink = ledoit_wolf(x - means[np.searchsorted(present, labels)])
    evals, evecs = np.linalg.eigh(cov)
    evals = np.maximum(evals, evals.max() * 1e-12)
    whiten = evecs / np.sqrt(evals)[None, :]
    feature, stat = key.split(":")
    part = ScorePart(feature, stat, {"whiten": whiten, "means": means @ whiten})
    train_scores = part_score("mahalanobis", part, x, {})
    part.offset, part.scale = float(train_scores.mean()), float(max(train_scores.std(), 1e-12))
    return part, shrink


def fit_gate(candidate: Candidate | str, train: SetFeatures, max_bank: int = 0, seed: int = 0):
    """``candidate`` fitted on the training set's features ``train`` only (class labels needed for Mahalanobis)."""
    from sonolens.models.ood_graph import OodGate, ScorePart

    cand = parse_candidate(candidate) if isinstance(candidate, str) else candidate
    if cand.method == "mahalanobis":
        if any(v is None for v in train.labels):
            raise ConfigError("Mahalanobis needs a class label for every training image")
        y = [int(v) for v in train.labels if v is not None]
        fitted = [fit_mahalanobis_part(train.feats[k], y, k) for k in cand.keys]
        return OodGate("mahalanobis", [p for p, _ in fitted],
                       {"shrinkage": ",".join(f"{s:.4f}" for _, s in fitted)})
    if cand.method == "knn":
        x = np.asarray(train.feats[cand.keys[0]], np.float64)
        if max_bank and len(x) > max_bank:
            x = x[np.sort(np.random.default_rng(seed).choice(len(x), max_bank, replace=False))]
        bank = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        feature, stat = cand.keys[0].split(":")
        return OodGate("knn", [ScorePart(feature, stat, {"bank": bank})], {"k": cand.k})
    params = {"temperature": 1.0} if cand.method == "energy" else {}
    return OodGate(cand.method, [ScorePart("logits", "vector")], params)


def gate_scores(gate, feats: SetFeatures) -> np.ndarray:
    """The gate's score (numpy reference, float64) of every item of ``feats``."""
    from sonolens.models.ood_graph import reference_score

    return reference_score(gate, feats.feats)


def leave_source_out(candidate: Candidate | str, train: SetFeatures,
                     val: SetFeatures) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """For each source dataset ``d`` of ``train`` (``source_of``): ``candidate`` fitted on ``d``'s training rows;
    (``d``, its scores of ``d``'s validation rows, its scores of the *other* sources' train + val images). Empty with
    fewer than two sources. Test rows are never read. ``shares_of`` and ``levels_of`` summarise one such list."""
    src_train, src_val = train.sources(), val.sources()
    names = sorted(set(src_train))
    if len(names) < 2:
        return []
    out = []
    for d in names:
        own = [s == d for s in src_train]
        gate = fit_gate(candidate, train.subset(own))
        own_val = gate_scores(gate, val.subset([s == d for s in src_val]))
        others = concat_features(train.subset([not k for k in own]), val.subset([s != d for s in src_val]))
        out.append((d, own_val, gate_scores(gate, others)))
    return out


def shares_of(loso: list[tuple[str, np.ndarray, np.ndarray]],
              target_flagged: float = DEFAULT_TARGET_FLAGGED) -> dict[str, float] | None:
    """Per fitted source: the share of the other sources' images above its usual threshold (``choose_threshold``
    of its own validation scores). ``None`` for an empty ``leave_source_out`` list."""
    return {d: float((others > choose_threshold(own_val, target_flagged)).mean())
            for d, own_val, others in loso} or None


def levels_of(loso: list[tuple[str, np.ndarray, np.ndarray]], cross_target: float,
              target_flagged: float = DEFAULT_TARGET_FLAGGED) -> dict[str, float] | None:
    """Per fitted source: the other sources' images on its validation scale (``val_scale``) and the level that
    flags only ``cross_target`` of them (their ``1 - cross_target`` quantile). ``None`` for an empty list."""
    return {d: float(np.quantile(val_scale(others, own_val, target_flagged), 1.0 - cross_target))
            for d, own_val, others in loso} or None


def cross_source_shares(candidate: Candidate | str, train: SetFeatures, val: SetFeatures,
                        target_flagged: float = DEFAULT_TARGET_FLAGGED) -> dict[str, float] | None:
    """How a gate fitted on one scanner takes another scanner's images of the same organ — the selection set's
    stand-in for a hospital it has never seen (``leave_source_out`` summarised by ``shares_of``)."""
    return shares_of(leave_source_out(candidate, train, val), target_flagged)


def _val_anchors(ref: np.ndarray, target_flagged: float) -> tuple[float, float]:
    """The in-domain validation scores' median and usual threshold: 0 and 1 of the validation scale."""
    return float(np.median(ref)), choose_threshold(ref, target_flagged)


def val_scale(scores: np.ndarray, ref: np.ndarray, target_flagged: float = DEFAULT_TARGET_FLAGGED) -> np.ndarray:
    """``scores`` on the scale of the in-domain validation scores ``ref``: 0 at their median, 1 at the usual
    threshold (``choose_threshold``). Scores of gates fitted on different data become comparable."""
    lo, hi = _val_anchors(ref, target_flagged)
    return (np.asarray(scores, np.float64) - lo) / max(hi - lo, 1e-12)


def cross_source_levels(candidate: Candidate | str, train: SetFeatures, val: SetFeatures, cross_target: float,
                        target_flagged: float = DEFAULT_TARGET_FLAGGED) -> dict[str, float] | None:
    """Where the threshold must sit for a hospital the gate has not seen: ``leave_source_out`` summarised by
    ``levels_of``. ``None`` with fewer than two sources."""
    return levels_of(leave_source_out(candidate, train, val), cross_target, target_flagged)


def cross_hospital_threshold(val_scores: np.ndarray, levels: dict[str, float],
                             target_flagged: float = DEFAULT_TARGET_FLAGGED) -> float:
    """The threshold of a gate fitted on every source, carried from the leave-one-source-out ``levels``: the
    highest level (every held-out source within its target), never below the usual threshold (level 1), on this
    gate's own validation scale."""
    lo, hi = _val_anchors(np.asarray(val_scores, np.float64), target_flagged)
    return float(lo + max(1.0, *levels.values()) * (hi - lo))


def choose_threshold(val_scores: np.ndarray, target_flagged: float = DEFAULT_TARGET_FLAGGED) -> float:
    """The ``1 - target_flagged`` quantile of the in-domain validation scores (linear interpolation): about
    ``target_flagged`` of in-domain images score above it."""
    v = np.asarray(val_scores, np.float64)
    if v.size == 0:
        raise ConfigError("no validation scores to set the threshold on")
    return float(np.quantile(v, 1.0 - float(target_flagged)))


# ------------------------------------------------------------------------------------------------------------
# Writing it into a model file
# ------------------------------------------------------------------------------------------------------------
def attach_gate(src: str | os.PathLike, dst: str | os.PathLike, gate, threshold: float,
                temperature: float | None = None, record: dict[str, Any] | None = None) -> ModelSpec:
    """Write ``src`` to ``dst`` (may be the same file) with ``gate``'s ``ood_score`` output (replacing any) and
    the spec's ``ood`` (method, threshold, graph details, ``record``) and ``temperature`` set. Returns the new
    spec. A model without a gate can be written with ``models.ood_graph.remove_ood_score``."""
    import tempfile

    import onnx

    from sonolens.models.onnx_export import read_spec, write_spec
    from sonolens.models.ood_graph import add_ood_score, gate_summary

    src, dst = Path(src), Path(dst)
    spec = read_spec(src)
    proto = onnx.load(str(src))
    tensors = add_ood_score(proto, gate)
    ood = {**gate_summary(gate, tensors), "threshold": float(threshold), **(record or {})}
    # ``replace``, not ``with_fields``: a refit replaces the previous gate's fields instead of merging into them
    new = replace(spec, ood=ood, temperature=spec.temperature if temperature is None else float(temperature))
    write_spec(proto, new)
    onnx.checker.check_model(proto)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=dst.parent)
    os.close(fd)
    try:
        onnx.save(proto, tmp)
        os.chmod(tmp, src.stat().st_mode & 0o777)  # mkstemp makes it 0600; keep the source file's mode
        os.replace(tmp, dst)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return new


@dataclass
class FitResult:
    spec: ModelSpec
    gate: Any
    threshold: float
    temperature: float
    val_scores: np.ndarray = field(repr=False)
    record: dict[str, Any] = field(default_factory=dict)


def fit_and_attach(model: str | os.PathLike, out: str | os.PathLike, data_root: str | os.PathLike,
                   split_csv: str | os.PathLike, *, gate_root: str | os.PathLike | None = None,
                   gate_csv: str | os.PathLike | None = None, candidate: str = DEFAULT_CANDIDATE, max_bank: int = 0,
                   target_flagged: float = DEFAULT_TARGET_FLAGGED, calibrate: bool = True,
                   threads: int = 1, cross_target: float | None = None) -> FitResult:
    """Fit the gate on the ``train`` rows of the gate's split (``gate_root``/``gate_csv``; default: the model's
    split ``data_root``/``split_csv``) through ``model``'s own graph and its threshold on that split's ``val``
    rows; the temperature on the model's split's ``val`` rows; write ``out`` (``attach_gate``). This is what
    ``sonolens fit-ood`` runs; an export script calls it after ``export_onnx`` / ``quantize_int8`` (an INT8 file
    gets its own fit: its features differ slightly from the fp32 file's).

    ``cross_target``: the threshold rule for hospitals the gate has never seen (``cross_hospital_threshold``):
    from the gate split's sources fitted one at a time, the level at which each other source has at most
    ``cross_target`` of its train + val images flagged, carried to the gate fitted on all of them."""
    from .calibrate import fit_temperature, nll

    cand = parse_candidate(candidate)
    ext = Extractor(model, cand.keys, threads=threads)
    names = ext.spec.class_names
    root, csv = Path(data_root), Path(split_csv)
    g_root, g_csv = Path(gate_root or root), Path(gate_csv or csv)
    train = ext.features(split_set("train", "in", g_root, g_csv, "train", names))
    gate_val = ext.features(split_set("val", "in", g_root, g_csv, "val", names))
    val = gate_val if (g_root, g_csv) == (root, csv) else ext.features(split_set("val", "in", root, csv, "val", names))
    if any(v is None for v in train.labels + gate_val.labels + val.labels):
        raise ConfigError(f"{g_csv} / {csv}: labels outside the model's classes ({', '.join(names)})")
    gate = fit_gate(cand, train, max_bank=max_bank)
    val_scores = gate_scores(gate, gate_val)
    threshold, rule = _threshold(cand, train, gate_val, val_scores, g_csv.name, target_flagged, cross_target)
    y_val = [int(v) for v in val.labels if v is not None]
    temperature = fit_temperature(val.logits, y_val) if calibrate else ext.spec.temperature
    record = {"candidate": cand.name, "fitted_on": f"{g_csv.name} train", "n_train": train.n,
              **rule,
              "target_flagged": float(target_flagged), "n_val": gate_val.n,
              "val_flagged": round(float((val_scores > threshold).mean()), 6),
              "temperature_fitted_on": f"{csv.name} val" if calibrate else "unchanged",
              "val_nll": [round(nll(val.logits, y_val, 1.0), 6), round(nll(val.logits, y_val, temperature), 6)]}
    spec = attach_gate(model, out, gate, threshold, temperature, record)
    return FitResult(spec, gate, threshold, temperature, val_scores, record)


def _threshold(cand: Candidate, train: SetFeatures, val: SetFeatures, val_scores: np.ndarray, split_name: str,
               target_flagged: float, cross_target: float | None) -> tuple[float, dict[str, Any]]:
    """The threshold and what the model file records of its rule (``fit_and_attach``)."""
    quantile_rule = f"{1 - target_flagged:g} quantile of the {split_name} val scores"
    if cross_target is None:
        return choose_threshold(val_scores, target_flagged), {"threshold_rule": quantile_rule}
    levels = cross_source_levels(cand, train, val, cross_target, target_flagged)
    if levels is None:
        raise ConfigError(f"{split_name}: the cross-hospital threshold needs a gate split of two or more datasets")
    rule = (f"cross-hospital: fitted on each of {', '.join(levels)} alone, the level flagging at most "
            f"{100 * cross_target:g} % of the other's train + val images (on the fitted source's val scale: 0 = "
            f"median, 1 = its {quantile_rule}); the highest level, at least 1, on this gate's val scale")
    return (cross_hospital_threshold(val_scores, levels, target_flagged),
            {"threshold_rule": rule, "cross_target": float(cross_target),
             "cross_levels": {k: round(v, 4) for k, v in levels.items()}})


def resolve_model(name: str) -> Path:
    """A model file path, or a bundled model name: ``pipeline.engines.resolve_model_path``, the one rule."""
    from sonolens.pipeline.engines import resolve_model_path

    return resolve_model_path(name)
