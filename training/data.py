"""Dataset readers and the image ``Dataset`` used by training and evaluation.

Readers return plain ``Sample(path, label)`` lists and need neither torch nor PIL, so ``sonolens audit-data``
and ``sonolens make-split`` start fast. Three ways in:

* ``read_busi(root)``: BUSI's ``benign/ malignant/ normal/`` layout, segmentation masks (``*_mask*.png``) ignored;
* ``read_class_folders(root)``: any folder-per-class dataset (class = sub-folder name, lowercased), so a model
  can be trained on another dataset (e.g. Kermany's ``NORMAL/ PNEUMONIA/``) without code changes;
* ``read_split_csv(csv, root, split)``: a committed split file (``file,label,group,split``) whose ``file`` column is
  relative to the dataset root, so one CSV works on every machine.

``ImageDataset`` loads every image as grayscale replicated to three channels: ultrasound is grayscale and the
runtime converts each frame gray → 3 channels too, so training sees exactly what inference will see (an RGB
scanner overlay cannot become a colour shortcut).
"""

from __future__ import annotations

import csv
import fnmatch
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sonolens.pipeline.errors import ConfigError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm")  # .dcm: DICOM stills (the dicom extra)
# BUSI's originals ship lesion masks next to the images: "benign (1)_mask.png", "benign (4)_mask_1.png".
# A mask is never a classification sample, so every reader skips them.
MASK_PATTERNS = ("*_mask.*", "*_mask_*.*")
BUSI_CLASSES = ("normal", "benign", "malignant")
SPLIT_COLUMNS = ("file", "label", "group", "split")


@dataclass(frozen=True)
class Sample:
    """One labelled image. ``group`` is the near-duplicate group from a split CSV ("" when unknown)."""

    path: Path
    label: str
    group: str = ""


def is_image_file(path: Path, exclude: Iterable[str] = MASK_PATTERNS) -> bool:
    """An image by extension, not hidden, and not matching any ``exclude`` glob (masks by default)."""
    name = path.name
    if name.startswith(".") or path.suffix.lower() not in IMAGE_EXTENSIONS:
        return False
    return not any(fnmatch.fnmatch(name.lower(), pat) for pat in exclude)


def _require_dir(root: Path | str) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"dataset folder not found: {root}")
    return root


def read_class_folders(root: Path | str, exclude: Iterable[str] = MASK_PATTERNS) -> list[Sample]:
    """Every image under ``root/<class>/`` (recursively), labelled with the lowercased sub-folder name.

    Sorted by relative path so that everything derived from the list (hash groups, seeded splits) is
    deterministic regardless of the file system's listing order.
    """
    root = _require_dir(root)
    exclude = tuple(exclude)
    samples = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        label = class_dir.name.lower()
        for path in class_dir.rglob("*"):
            if path.is_file() and is_image_file(path, exclude):
                samples.append(Sample(path, label))
    if not samples:
        raise ConfigError(f"no images found in class sub-folders of {root}")
    samples.sort(key=lambda s: s.path.relative_to(root).as_posix())
    return samples


def read_busi(root: Path | str) -> list[Sample]:
    """BUSI (Al-Dhabyani et al. 2020): ``root/{benign,malignant,normal}/*.png``, masks ignored."""
    root = _require_dir(root)
    missing = [c for c in BUSI_CLASSES if not (root / c).is_dir()]
    if missing:
        raise ConfigError(f"{root} does not look like BUSI: missing class folder(s) {', '.join(missing)}")
    samples = read_class_folders(root)
    return [s for s in samples if s.label in BUSI_CLASSES]


def read_split_csv(csv_path: Path | str, root: Path | str,
                   split: str | Sequence[str] | None = None) -> list[Sample]:
    """Samples of a split CSV (``file,label,group,split``; extra columns ignored), paths resolved against ``root``.

    ``split`` selects one split name ("train", "val", "test") or several; ``None`` keeps every row.
    Missing files are reported at once (usually a wrong ``root``) instead of failing mid-epoch.
    """
    csv_path, root = Path(csv_path), _require_dir(root)
    if not csv_path.is_file():
        raise ConfigError(f"split file not found: {csv_path}")
    wanted = None if split is None else ({split} if isinstance(split, str) else set(split))
    with csv_path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing_cols = [c for c in SPLIT_COLUMNS if c not in (reader.fieldnames or [])]
        if missing_cols:
            raise ConfigError(f"{csv_path}: missing column(s) {', '.join(missing_cols)} "
                              f"(expected {','.join(SPLIT_COLUMNS)})")
        rows = list(reader)
    if wanted is not None:
        known = {r["split"] for r in rows}
        unknown = wanted - known
        if unknown:
            raise ConfigError(f"{csv_path}: no rows in split(s) {', '.join(sorted(unknown))} "
                              f"(has {', '.join(sorted(known))})")
        rows = [r for r in rows if r["split"] in wanted]
    samples = [Sample(root / r["file"], r["label"].lower(), r["group"]) for r in rows]
    absent = [s.path for s in samples if not s.path.is_file()]
    if absent:
        raise ConfigError(f"{len(absent)} file(s) of {csv_path.name} not found under {root} "
                          f"(first: {absent[0]}); is the dataset root right?")
    return samples


def load_gray(path: Path | str) -> np.ndarray:
    """An image file as H×W uint8 grayscale, read exactly as the runtime reads it: the runtime's still reader
    (``pipeline.sources.stills.read_still``: EXIF orientation applied, DICOM stills through the ``dicom`` extra),
    then the runtime's grey conversion (``pipeline.preprocess.to_gray``, OpenCV's BT.601 weights)."""
    from sonolens.pipeline.preprocess import to_gray
    from sonolens.pipeline.sources.stills import read_still

    img = read_still(Path(path))  # a DICOM file that cannot be read raises its own one-line SourceError
    if img is None:
        raise ConfigError(f"cannot decode image {path}")
    return to_gray(img)


def class_counts(samples: Iterable[Sample]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for s in samples:
        counts[s.label] = counts.get(s.label, 0) + 1
    return dict(sorted(counts.items()))


class ImageDataset:
    """A map-style torch dataset: ``(transform(image), label_index)``.

    The image handed to ``transform`` is a ``torch.uint8`` tensor ``[3, H, W]`` (grayscale replicated), the
    input ``training.augment``'s transforms expect; with ``transform=None`` that tensor is returned as is.
    It is duck-typed (``__len__``/``__getitem__``, what ``DataLoader`` needs) rather than a subclass of
    ``torch.utils.data.Dataset`` so this module imports without torch; torch is imported on first use.
    """

    def __init__(self, samples: Sequence[Sample], class_names: Sequence[str],
                 transform: Callable[[Any], Any] | None = None):
        self.samples = list(samples)
        self.class_names = tuple(class_names)
        index = {name: i for i, name in enumerate(self.class_names)}
        unknown = sorted({s.label for s in self.samples} - set(index))
        if unknown:
            raise ConfigError(f"labels {', '.join(unknown)} are not among the model's classes "
                              f"({', '.join(self.class_names)})")
        self.targets = [index[s.label] for s in self.samples]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        import torch

        gray = load_gray(self.samples[i].path)
        image = torch.from_numpy(gray).unsqueeze(0).expand(3, -1, -1).contiguous()
        if self.transform is not None:
            image = self.transform(image)
        return image, self.targets[i]


# --------------------------------------------------------------------------------------------------------
# Datasets with a metadata.csv (BUS-UCLM, BrEaST-Lesions-USG) and multi-dataset split files
# --------------------------------------------------------------------------------------------------------
BUS_UCLM = "bus_uclm"
BREAST_LESIONS_USG = "breast_lesions_usg"
LESION_CLASSES = ("benign", "malignant")
# breast_lesions_usg is the external test set: never trained on, never used to select a model, a threshold or a
# calibration. Split tools refuse it (see training.multi_split).
EXTERNAL_TEST_DATASETS = (BREAST_LESIONS_USG,)
LESION_SPLIT_COLUMNS = ("file", "label", "group", "split", "dataset", "patient", "mask")


@dataclass(frozen=True)
class LesionSample(Sample):
    """A ``Sample`` that knows where it comes from: ``dataset`` (its folder name, e.g. ``bus_uclm``), ``patient``,
    the lesion ``mask`` (a 0/255 PNG next to the image; ``None`` when the dataset has none) and the rest of its
    metadata row as ``meta`` (sorted ``(column, value)`` pairs; ``info()`` gives a dict). ``group`` is what must
    stay on one side of a split: the patient (BUS-UCLM's ``split_group``) or a near-duplicate group."""

    dataset: str = ""
    patient: str = ""
    mask: Path | None = None
    meta: tuple[tuple[str, str], ...] = ()

    def info(self) -> dict[str, str]:
        return dict(self.meta)

    @property
    def has_lesion_mask(self) -> bool:
        """A mask file with a lesion in it (``lesion_pixels`` > 0 in the metadata, or unknown but a mask given)."""
        if self.mask is None:
            return False
        pixels = self.info().get("lesion_pixels", "")
        return not pixels or int(float(pixels)) > 0


def read_metadata_csv(root: Path | str, dataset: str | None = None, *, group_column: str = "patient",
                      required: Sequence[str] = ("file", "label", "patient"),
                      labels: Iterable[str] | None = None) -> list[LesionSample]:
    """Every row of ``root/metadata.csv`` as a ``LesionSample`` (``file`` and ``mask`` relative to ``root``),
    sorted by file. ``group_column`` names the column that must stay on one side of a split; ``labels`` keeps only
    those (lowercased) labels. Missing columns, unknown labels and absent files are a ``ConfigError`` at once."""
    root = _require_dir(root)
    meta_path = root / "metadata.csv"
    if not meta_path.is_file():
        raise ConfigError(f"{root} has no metadata.csv")
    with meta_path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        cols = reader.fieldnames or []
        missing = [c for c in (*required, group_column) if c not in cols]
        if missing:
            raise ConfigError(f"{meta_path}: missing column(s) {', '.join(missing)}")
        rows = list(reader)
    keep = None if labels is None else {lab.lower() for lab in labels}
    name = dataset or root.name
    samples = []
    for r in rows:
        label = r["label"].strip().lower()
        if label not in BUSI_CLASSES:
            raise ConfigError(f"{meta_path}: label {r['label']!r} of {r['file']} is not one of "
                              f"{', '.join(BUSI_CLASSES)}")
        if keep is not None and label not in keep:
            continue
        mask = root / r["mask"] if r.get("mask") else None
        samples.append(LesionSample(root / r["file"], label, r[group_column], dataset=name, patient=r["patient"],
                                    mask=mask, meta=tuple(sorted(r.items()))))
    absent = [p for s in samples for p in (s.path, s.mask) if p is not None and not p.is_file()]
    if absent:
        raise ConfigError(f"{len(absent)} file(s) named in {meta_path} are missing (first: {absent[0]})")
    samples.sort(key=lambda s: s.path.relative_to(root).as_posix())
    return samples


def read_bus_uclm(root: Path | str, labels: Iterable[str] | None = None) -> list[LesionSample]:
    """BUS-UCLM (Vallez et al. 2025; Spain, Siemens ACUSON S2000): 683 images of 38 patients with lesion masks.

    ``group`` is ``split_group``: the patient, except that CHCO and CHVI (four byte-identical images) are one
    group, ``CHCO+CHVI`` — split on it, never on images. ``meta`` keeps ``doppler``, ``marks`` (calipers),
    ``combined`` (dual-panel) and ``mask_note`` (HESN_002–005: mask stretched, alignment approximate)."""
    return read_metadata_csv(root, BUS_UCLM, group_column="split_group",
                             required=("file", "mask", "label", "patient", "split_group"), labels=labels)


def read_breast_lesions_usg(root: Path | str, lesions_only: bool = False) -> list[LesionSample]:
    """BrEaST-Lesions-USG (Pawłowska et al. 2024; Poland): 256 cases, one image per patient, tumour masks.

    ``lesions_only=True`` keeps the 252 images with a tumour (154 benign, 98 malignant): the 4 ``normal`` cases
    (BI-RADS 1: case045, case061, case209, case213) have no lesion, so a benign-vs-malignant evaluation and a
    localisation measure cannot use them. This is the EXTERNAL test set: never train, select or calibrate on it."""
    samples = read_metadata_csv(root, BREAST_LESIONS_USG, group_column="patient",
                                required=("file", "mask", "label", "patient", "birads"))
    if lesions_only:
        samples = [s for s in samples if s.label in LESION_CLASSES and s.has_lesion_mask]
    return samples


def read_lesion_split_csv(csv_path: Path | str, root: Path | str,
                          split: str | Sequence[str] | None = None) -> list[LesionSample]:
    """A multi-dataset split CSV (``file,label,group,split,dataset,patient,mask``; ``file`` and ``mask`` relative to
    ``root``, the folder holding the datasets) as ``LesionSample``s. ``read_split_csv`` reads the same file as
    plain ``Sample``s (extra columns ignored), which is what training uses."""
    plain = read_split_csv(csv_path, root, split)
    root = Path(root)
    wanted = None if split is None else ({split} if isinstance(split, str) else set(split))
    with Path(csv_path).open(newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if wanted is None or r["split"] in wanted]
    out = []
    for s, r in zip(plain, rows):
        mask = root / r["mask"] if r.get("mask") else None
        dataset = r.get("dataset") or Path(r["file"]).parts[0]
        out.append(LesionSample(s.path, s.label, s.group, dataset=dataset, patient=r.get("patient", ""), mask=mask))
    return out
