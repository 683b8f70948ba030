"""Perceptual hashes of a model's training images, shipped beside the model, so ``sonolens eval`` can tell a user
which of the images they score the model has already seen — renamed or re-saved copies included.

A user's machine has no training set to compare with; the hashes (pHash and dHash, 64 bits each: about 40 bytes an
image) are enough. ``sonolens train-hashes`` writes them next to a model file as ``<model>.trainhash.json``; the
match rule is the near-duplicate rule of ``sonolens audit-data`` (``audit.MatchRule``), the one that built the
leak-free split. Not for chest X-rays: their 8×8 pHashes are all alike (``audit.COLLAPSE_FRACTION``), so a match
would mean nothing; the command refuses a set whose hashes collapse.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sonolens.pipeline.errors import ConfigError

from .audit import MatchRule, hamming, hash_samples

SUFFIX = ".trainhash.json"
FORMAT = "sonolens-trainhash/1"


def sidecar_of(model_path: str | os.PathLike) -> Path:
    """``models/weights/busi_student.onnx`` → ``models/weights/busi_student.trainhash.json``."""
    p = Path(model_path)
    return p.with_name(p.stem + SUFFIX)


def resolve_model_file(model: str) -> Path | None:
    """A model argument as a file by the one resolver's rule (``pipeline.engines.resolve_model_path``), or None."""
    from sonolens.pipeline.engines import resolve_model_path
    from sonolens.pipeline.errors import ModelError

    try:
        return resolve_model_path(model)
    except ModelError:
        return None


def build(samples: Sequence[Any], *, splits: Sequence[str], source: str) -> dict[str, Any]:
    """The sidecar document for ``samples`` (``data.Sample``); unreadable files are a ``ConfigError``."""
    hashes = hash_samples(samples)
    if hashes.errors:
        i, err = next(iter(hashes.errors.items()))
        raise ConfigError(f"{samples[i].path}: cannot hash ({err}); {len(hashes.errors)} unreadable file(s)")
    rule = MatchRule()
    return {"format": FORMAT, "source": source, "splits": list(splits), "n": len(samples),
            "rule": {"phash": rule.phash, "confirm_phash": rule.confirm_phash, "dhash": rule.dhash},
            "phash": [f"{int(v):016x}" for v in hashes.phash], "dhash": [f"{int(v):016x}" for v in hashes.dhash]}


def check_not_collapsed(doc: dict[str, Any], max_fraction: float = 0.05) -> None:
    """Refuse hashes that cannot tell images apart: when a typical image matches more than ``max_fraction`` of the
    set under the rule (chest X-rays), every evaluated image would count as seen."""
    ph, dh = _arrays(doc)
    rule = _rule(doc)
    sample = np.arange(0, len(ph), max(1, len(ph) // 200))
    hits = rule.matches(hamming(ph[sample], ph), hamming(dh[sample], dh)).sum(axis=1) - 1  # not itself
    share = hits / max(1, len(ph) - 1)
    if float(np.median(share)) > max_fraction:
        raise ConfigError(f"these images' hashes do not tell them apart (a typical image matches "
                          f"{100 * float(np.median(share)):.0f} % of the set): training-overlap checks would be "
                          f"meaningless for this data")


def load(model: str) -> tuple[Path, dict[str, Any]] | None:
    """The sidecar of a model argument (file or bundled name), or None when it has none. A malformed one is a
    ``ConfigError``."""
    f = resolve_model_file(model)
    if f is None or not sidecar_of(f).is_file():
        return None
    path = sidecar_of(f)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        _arrays(doc)
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a training-hash file ({type(exc).__name__})") from None
    if doc.get("format") != FORMAT:
        raise ConfigError(f"{path}: unsupported format {doc.get('format')!r} (expected {FORMAT!r})")
    return path, doc


def seen(samples: Sequence[Any], doc: dict[str, Any]) -> np.ndarray:
    """Per sample: does it match one of the training images under the document's rule? Unreadable files: False
    (the evaluation itself reports them)."""
    hashes = hash_samples(samples)
    ph, dh = _arrays(doc)
    match = _rule(doc).matches(hamming(hashes.phash, ph), hamming(hashes.dhash, dh)).any(axis=1)
    return match & hashes.readable


def _arrays(doc: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    ph = np.array([int(h, 16) for h in doc["phash"]], np.uint64)
    dh = np.array([int(h, 16) for h in doc["dhash"]], np.uint64)
    if len(ph) != len(dh) or not len(ph):
        raise ValueError("phash and dhash lists differ in length or are empty")
    return ph, dh


def _rule(doc: dict[str, Any]) -> MatchRule:
    r = doc.get("rule") or {}
    return MatchRule(int(r.get("phash", 10)), int(r.get("confirm_phash", 16)), int(r.get("dhash", 13)))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sonolens train-hashes",
        description="Write the perceptual hashes of a model's training (and validation) images next to the model "
                    "(<model>.trainhash.json), so 'sonolens eval' can leave out images the model has seen.")
    p.add_argument("--model", required=True, help="the ONNX file (or bundled name) the hashes belong to")
    p.add_argument("--data", required=True, help="dataset root of --split-file")
    p.add_argument("--split-file", required=True, help="the split CSV the model was trained on")
    p.add_argument("--splits", default="train,val", help="which rows the model saw (default: train,val)")
    p.add_argument("--out", default=None, help="output file (default: next to the model)")
    return p


def cli_main(argv: list[str]) -> int:
    from .data import read_split_csv

    args = _parser().parse_args(argv)
    from sonolens.pipeline.engines import resolve_model_path
    from sonolens.pipeline.outputs import check_writable, write_text_atomic

    model = resolve_model_path(args.model)  # one line naming both ways when it is neither a file nor bundled
    splits = [s for s in args.splits.split(",") if s]
    if not splits:
        raise ConfigError("--splits names no split (e.g. train,val)")
    out = Path(args.out) if args.out else sidecar_of(model)
    try:  # before any image is hashed
        check_writable(out, "training-hash file")
    except ConfigError as exc:
        raise ConfigError(str(exc) if args.out else f"{exc} (write it elsewhere with --out)") from None
    samples = read_split_csv(args.split_file, args.data, splits)
    if not samples:
        raise ConfigError(f"{args.split_file}: no rows in split(s) {', '.join(splits)}")
    doc = build(samples, splits=splits, source=Path(args.split_file).name)
    check_not_collapsed(doc)
    write_text_atomic(out, json.dumps(doc, separators=(",", ":")) + "\n", "training-hash file")
    print(f"wrote {out}: hashes of {doc['n']} images ({', '.join(splits)} rows of {doc['source']})")
    return 0
