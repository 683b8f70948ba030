"""``sonolens simulate``: render phantom clips to MP4, remake the committed sample clips, time the renderer.

    sonolens simulate malignant --seconds 6 --out malignant.mp4 [--seed 0] [--size 640x480] [--fps 30]
    sonolens simulate --samples assets/sample_videos     # remake the committed sample clips
    sonolens simulate --bench [KIND]                     # ms per frame on one core
    sonolens simulate --stills A.png B.png --out demo.mp4 [--dwell 4]   # a probe-like clip over still images
    sonolens simulate --busi-demo ../shared/datasets/busi --out assets/sample_videos/busi_demo.mp4

The only module of the simulator that imports ``sonolens.pipeline``: the MP4 writer the recorder shares
(``pipeline.videoio.VideoWriter``) and the user-facing errors (``pipeline.errors``). A ``PhantomError`` from
the renderer becomes a ``SourceError``, a bad option a ``ConfigError``; ``sonolens.cli`` prints either as
one line and exits with code 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sonolens.pipeline.errors import ConfigError, SourceError
from sonolens.pipeline.videoio import VideoWriter

from .bench import bench
from .errors import PhantomError
from .kinds import KINDS, check_kind
from .render import Phantom
from .stills import StillsPan

__all__ = ["SAMPLES", "SAMPLE_SIZE", "SAMPLE_FPS", "SAMPLE_CRF", "SAMPLE_PRESET", "parse_size", "write_clip",
           "make_samples", "cli_main"]

# The committed sample clips: file name -> (kind, seed, seconds). ``--samples`` writes exactly these.
SAMPLES: dict[str, tuple[str, int, float]] = {
    "normal.mp4": ("normal", 11, 5.0),
    "cyst.mp4": ("cyst", 12, 6.0),
    "benign.mp4": ("benign", 13, 6.0),
    "malignant.mp4": ("malignant", 14, 6.0),
    "sweep.mp4": ("sweep", 15, 12.0),
}
SAMPLE_SIZE = (640, 480)
SAMPLE_FPS = 30.0
SAMPLE_CRF = 28
SAMPLE_PRESET = "slow"

# The bundled demo made from real breast images (``busi_demo.mp4``, the default source of ``run`` and ``view``):
# the first two benign, the first two malignant and the first normal image of BUSI's leak-free *test* split
# (``training/split_csv/busi.csv``, sorted as there: no bundled model was trained, selected or calibrated on them),
# 4 s each. BUSI is CC BY 4.0 (W. Al-Dhabyani et al., Data in Brief 28:104863, 2020), whose SOURCE.md allows
# exactly this; ``assets/sample_videos/README.md`` carries the citation and the list.
BUSI_DEMO_FILES = ("benign/benign (1).png", "benign/benign (100).png", "malignant/malignant (1).png",
                   "malignant/malignant (107).png", "normal/normal (104).png")
BUSI_DEMO_DWELL_S = 4.0
BUSI_DEMO_SEED = 0


@contextmanager
def _as_source_error() -> Iterator[None]:
    """Re-raise a ``PhantomError`` (bad kind, size, fps, length) as the one-line ``SourceError`` users see."""
    try:
        yield
    except PhantomError as exc:
        raise SourceError(str(exc)) from None


def parse_size(text: str) -> tuple[int, int]:
    """``"640x480"`` → (640, 480); ``ConfigError`` otherwise."""
    try:
        w, h = (int(v) for v in text.lower().replace("×", "x").split("x"))
    except ValueError:
        raise ConfigError(f"--size must look like 640x480, got {text!r}") from None
    if w < 64 or h < 64 or w > 4096 or h > 4096:
        raise ConfigError(f"--size must be between 64x64 and 4096x4096, got {text!r}")
    return w, h


def write_clip(kind: str, out: str | Path, seconds: float, seed: int = 0, fps: float = 30.0,
               size: tuple[int, int] = (640, 480), crf: int = 23, preset: str = "veryfast",
               progress: bool = True) -> int:
    """Render a ``seconds``-long clip of ``kind`` to ``out`` (MP4); return the number of frames written.

    ``size`` is (width, height) in pixels. Raises ``ConfigError`` for a length that is not positive or a file
    that cannot be written, ``SourceError`` for an unknown kind, a size under 64×64 or a bad frame rate.
    """
    if not seconds > 0:
        raise ConfigError(f"--seconds must be positive, got {seconds}")
    with _as_source_error():
        phantom = Phantom(kind, seed=seed, fps=fps, size=size, seconds=seconds)
    n = phantom.frame_count
    assert n is not None  # seconds > 0 was checked: a finite clip
    out = Path(out)
    t0 = last = time.perf_counter()
    with VideoWriter(out, fps, size=size, crf=crf, preset=preset) as writer:
        for i in range(n):
            writer.write(phantom.render(i))
            now = time.perf_counter()
            if progress and (now - last > 1.0 or i == n - 1):
                last = now
                end = "\n" if i == n - 1 else ""
                print(f"\rsimulate: {out.name}: {i + 1}/{n} frames ({now - t0:.1f} s)", end=end, file=sys.stderr,
                      flush=True)
    return n


def make_samples(folder: str | Path, progress: bool = True) -> list[Path]:
    """Write the ``SAMPLES`` clips into ``folder`` (created if missing) and return their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, (kind, seed, seconds) in SAMPLES.items():
        path = folder / name
        write_clip(kind, path, seconds, seed=seed, fps=SAMPLE_FPS, size=SAMPLE_SIZE, crf=SAMPLE_CRF,
                   preset=SAMPLE_PRESET, progress=progress)
        paths.append(path)
    return paths


def write_stills_clip(files: list[str | Path], out: str | Path, dwell_s: float = 4.0, seed: int = 0,
                      fps: float = 30.0, size: tuple[int, int] = (640, 480), crf: int = 23, preset: str = "veryfast",
                      progress: bool = True) -> int:
    """A probe-like clip over still images (``simulator.stills.StillsPan``) to ``out``; returns the frame count.
    A missing or unreadable image is a ``SourceError`` naming it."""
    import cv2

    stills = []
    for f in files:
        img = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise SourceError(f"cannot read image {f} (missing or not an image)")
        stills.append(img)
    with _as_source_error():
        clip = StillsPan(stills, dwell_s=dwell_s, fps=fps, size=size, seed=seed)
    out = Path(out)
    with VideoWriter(out, fps, size=size, crf=crf, preset=preset) as writer:
        for i, frame in enumerate(clip.frames()):
            writer.write(frame)
            if progress and (i % 30 == 29 or i == clip.frame_count - 1):
                end = "\n" if i == clip.frame_count - 1 else ""
                print(f"\rsimulate: {out.name}: {i + 1}/{clip.frame_count} frames", end=end, file=sys.stderr,
                      flush=True)
    return clip.frame_count


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sonolens simulate",
        description="Render a simulated B-mode breast ultrasound clip (a phantom, NOT patient data) to MP4.")
    p.add_argument("kind", nargs="?", help=f"what the probe passes: {', '.join(KINDS)}")
    p.add_argument("--seconds", type=float, default=6.0, help="clip length (default 6)")
    p.add_argument("--out", help="output .mp4 file")
    p.add_argument("--seed", type=int, default=0, help="random seed: same seed, same clip (default 0)")
    p.add_argument("--size", default="640x480", help="frame size WxH (default 640x480)")
    p.add_argument("--fps", type=float, default=30.0, help="frame rate (default 30)")
    p.add_argument("--crf", type=int, default=23, help="H.264 quality, lower is better (default 23)")
    p.add_argument("--preset", default="veryfast", help="x264 speed preset (default veryfast)")
    p.add_argument("--samples", metavar="DIR",
                   help="instead: write the committed sample clips (normal, cyst, benign, malignant, sweep) to DIR")
    p.add_argument("--bench", action="store_true", help="instead: print ms per rendered frame on one core")
    p.add_argument("--stills", nargs="+", metavar="IMAGE",
                   help="instead: a probe-like clip (slow pan and zoom, fresh speckle) over these still images")
    p.add_argument("--dwell", type=float, default=4.0, help="--stills: seconds per image (default 4)")
    p.add_argument("--busi-demo", metavar="BUSI_DIR",
                   help="instead: remake the bundled busi_demo.mp4 from these BUSI test images (needs --out)")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    return p


def cli_main(argv: list[str]) -> int:
    """``sonolens simulate ARGV``; returns 0. Raises ``ConfigError`` or ``SourceError`` (one line each)."""
    args = _parser().parse_args(argv)
    with _as_source_error():
        return _simulate(args)


def _simulate(args: argparse.Namespace) -> int:
    if args.samples:
        for path in make_samples(args.samples, progress=not args.quiet):
            print(f"{path}  {path.stat().st_size / 1e6:.2f} MB")
        return 0
    if args.stills or args.busi_demo:
        return _stills(args)
    if args.bench:
        kind = check_kind(args.kind or "sweep")
        r = bench(kind, size=parse_size(args.size))
        print(f"phantom {kind} {args.size}: init {r['init_ms']:.0f} ms, per frame median {r['median_ms']:.1f} ms, "
              f"p90 {r['p90_ms']:.1f} ms, max {r['max_ms']:.1f} ms (one OpenCV thread)")
        return 0
    if not args.kind:
        raise ConfigError("give a phantom kind (" + ", ".join(KINDS) + "), or --samples DIR")
    check_kind(args.kind)
    if not args.out:
        raise ConfigError("give --out FILE.mp4")
    out = Path(args.out)
    _make_parent(out)
    n = write_clip(args.kind, out, args.seconds, seed=args.seed, fps=args.fps, size=parse_size(args.size),
                   crf=args.crf, preset=args.preset, progress=not args.quiet)
    print(f"wrote {out} ({n} frames, {out.stat().st_size / 1e6:.2f} MB) - simulated, not patient data")
    return 0


def _make_parent(out: Path) -> None:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create folder {out.parent}: {exc.strerror or exc}") from None


def _stills(args: argparse.Namespace) -> int:
    if not args.out:
        raise ConfigError("give --out FILE.mp4")
    out = Path(args.out)
    if args.busi_demo:
        files: list[str | Path] = [Path(args.busi_demo) / f for f in BUSI_DEMO_FILES]
        dwell, seed, crf, preset = BUSI_DEMO_DWELL_S, BUSI_DEMO_SEED, SAMPLE_CRF, SAMPLE_PRESET
    else:
        files, dwell, seed, crf, preset = list(args.stills), args.dwell, args.seed, args.crf, args.preset
    if any(Path(f).resolve() == out.resolve() for f in files):
        raise ConfigError(f"--out {out} is also an input image")
    _make_parent(out)
    n = write_stills_clip(files, out, dwell_s=dwell, seed=seed, fps=args.fps, size=parse_size(args.size), crf=crf,
                          preset=preset, progress=not args.quiet)
    print(f"wrote {out} ({n} frames, {out.stat().st_size / 1e6:.2f} MB) - made from still images")
    return 0
