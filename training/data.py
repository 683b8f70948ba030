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

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
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
    """An image file as H×W uint8 grayscale (OpenCV's BT.601 weights, the same as the runtime's conversion)."""
    import cv2

    data = np.fromfile(str(path), dtype=np.uint8)  # np.fromfile + imdecode: no trouble with odd file names
    img = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE) if data.size else None
    if img is None:
        raise ConfigError(f"cannot decode image {path}")
    return img


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
