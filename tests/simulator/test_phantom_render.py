"""The simulator itself (``sonolens.simulator``): determinism, the rendered physics, errors, dependencies."""

from __future__ import annotations

import ast
import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sonolens.simulator import KINDS, Phantom, PhantomError

SIMULATOR = Path(__file__).resolve().parents[2] / "simulator"
SMALL = (320, 240)

# sha256 of a few frames (and their lesion boxes) of every kind, recorded with the renderer as it was before
# it moved out of ``pipeline/`` (``phantom_render.py``/``phantom_scene.py``). Identical with numpy 2.0, 2.2 and
# 2.4 and OpenCV 5.0 on x86-64. A change here means every clip changes: the sample clips in assets/ would
# have to be remade and this table updated, on purpose.
GOLDEN = {
    "normal": "8ca5f7341473907ec811f78561a6a922e8863e487ccb742bb87b69275a66607e",
    "cyst": "97b3097c1dc9dbab959f4ecbbe96f4d110bab0d6eec9716032257662b5cb5d24",
    "benign": "87af262146c282c1531647ba3e8575b75f600e6864bf67c6ae9ecc5e67f0277b",
    "malignant": "fa21ab148d1999ff35bebfdcfb62ce17f848936cec798707bf932e3652ef90fa",
    "sweep": "e2e2899d422fed6ef3802453fa10aa32de1e9ae2c8ad4c992b398ac279cb2caa",
}


def _fingerprint(kind: str) -> str:
    """Hash of frames of a finite clip (an even size) and of an endless stream (an odd size), with their truth."""
    h = hashlib.sha256()
    for seconds, size, frames in ((6.0, (160, 120), (45, 90, 135)), (None, (201, 163), (60, 200))):
        ph = Phantom(kind, seed=7, size=size, seconds=seconds)
        for i in frames:
            h.update(ph.render(i).tobytes())
            for t in ph.truth(i):
                h.update(f"{t.kind} {tuple(int(v) for v in t.bbox)} {t.scale:.6f}".encode())
    return h.hexdigest()


@pytest.mark.parametrize("kind", KINDS)
def test_rendering_is_unchanged(kind):
    assert set(GOLDEN) == set(KINDS)
    assert _fingerprint(kind) == GOLDEN[kind]


def test_same_seed_same_frames_any_order_and_other_seed_differs():
    a = Phantom("cyst", seed=3, size=SMALL, seconds=4.0)
    b = Phantom("cyst", seed=3, size=SMALL, seconds=4.0)
    c = Phantom("cyst", seed=4, size=SMALL, seconds=4.0)
    later = a.render(90)                      # render out of order: frames are random-access
    for i in (0, 37, 60):
        assert np.array_equal(a.render(i), b.render(i))
    assert np.array_equal(later, b.render(90))
    img_a, img_c = a.render_bmode(60).astype(float), c.render_bmode(60).astype(float)
    assert np.abs(img_a - img_c).mean() > 10


@pytest.mark.parametrize("size", [(640, 480), (321, 241)])
def test_frame_shape_dtype_and_black_surround(size):
    ph = Phantom("benign", seed=0, size=size, seconds=2.0)
    frame = ph.render(30)
    assert frame.shape == (size[1], size[0], 3) and frame.dtype == np.uint8
    x, y, w, h = ph.layout.image_rect
    assert 0 < x and x + w < size[0] and 0 < y and y + h <= size[1]
    image = frame[y:y + h, x:x + w]
    assert image.mean() > 40                                   # tissue is shown...
    assert np.array_equal(image[..., 0], image[..., 1])        # ...in grey
    assert frame[y + h // 2: y + h // 2 + 20, : max(1, x // 4)].max() == 0  # black left margin
    assert frame[: y, :].max() > 100                           # the label bar has text for the ROI step


def test_cyst_appears_peaks_and_vanishes():
    ph = Phantom("cyst", seed=1, size=SMALL, seconds=6.0)
    n = ph.frame_count
    assert n == 180
    scales = [t[0].scale if (t := ph.truth(i)) else 0.0 for i in range(0, n, 10)]
    assert scales[0] == 0.0 and scales[-1] == 0.0 and max(scales) > 0.95
    peak = int(np.argmax(scales))
    assert all(np.diff(scales[: peak + 1]) >= 0) and all(np.diff(scales[peak:]) <= 0)

    x, y, w, h = ph.truth(n // 2)[0].bbox
    box = (slice(y + h // 4, y + 3 * h // 4), slice(x + w // 4, x + 3 * w // 4))
    before, mid, after = (ph.render(i)[box][..., 0].mean() for i in (0, n // 2, n - 1))
    assert mid < 0.25 * before          # anechoic cyst fills the box at its peak
    assert after > 3 * mid              # tissue is back once the probe has passed


def _below_vs_beside(kind: str, seed: int) -> float:
    """Mean grey 1–6 mm below the lesion over its central half, divided by the same depth beside it."""
    ph = Phantom(kind, seed=seed, seconds=6.0)
    mid = ph.frame_count // 2
    x, y, w, h = ph.truth(mid)[0].bbox
    lay = ph.layout
    r0, r1 = y + h + round(1.0 / lay.mm_per_px), y + h + round(6.0 / lay.mm_per_px)
    c0, c1 = x + w // 4, x + 3 * w // 4
    below, beside = [], []
    for i in range(mid - 6, mid + 7, 6):
        img = ph.render(i)[..., 0].astype(float)
        below.append(img[r0:r1, c0:c1].mean())
        for off in (-w, w):
            if c0 + off >= lay.img_x and c1 + off <= lay.img_x + lay.img_w:
                beside.append(img[r0:r1, c0 + off:c1 + off].mean())
    assert beside, "no room beside the lesion"
    return float(np.mean(below) / np.mean(beside))


def test_posterior_enhancement_for_cyst_and_shadowing_for_malignant():
    cyst = _below_vs_beside("cyst", seed=2)
    malignant = _below_vs_beside("malignant", seed=2)
    assert cyst > 1.1, cyst
    assert malignant < 0.8, malignant


def test_speckle_decorrelates_as_probe_moves():
    ph = Phantom("normal", seed=5, size=SMALL, seconds=4.0)
    lay = ph.layout
    region = (slice(lay.img_h // 4, lay.img_h // 2), slice(lay.img_w // 4, 3 * lay.img_w // 4))

    def corr(i: int, j: int) -> float:
        a, b = ph.render_bmode(i)[region].ravel(), ph.render_bmode(j)[region].ravel()
        return float(np.corrcoef(a.astype(float), b.astype(float))[0, 1])

    consecutive = [corr(i, i + 1) for i in (10, 40, 70)]
    assert all(0.5 < r < 0.99 for r in consecutive), consecutive
    assert corr(40, 70) < min(consecutive) - 0.2   # a second later the speckle is new


def test_bad_parameters_raise_phantom_error():
    with pytest.raises(PhantomError) as err:
        Phantom("tumour")
    assert isinstance(err.value, ValueError)
    assert all(k in str(err.value) for k in KINDS)             # the message lists the valid kinds
    for kwargs, words in (({"size": (63, 480)}, "64x64"), ({"fps": 0}, "fps"), ({"fps": float("nan")}, "fps"),
                          ({"seconds": -1.0}, "seconds"), ({"seconds": float("inf")}, "seconds")):
        with pytest.raises(PhantomError, match=words):
            Phantom("cyst", **kwargs)


# ---------------------------------------------------------------------------------------------- dependencies
def test_simulator_imports_no_pipeline_qt_or_torch():
    code = ("import sys, sonolens.simulator as s; s.Phantom('cyst', size=(96, 96)).render(0); "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'tqdm', 'PyQt6', 'timm', 'av') "
            "or m.startswith(('sonolens.pipeline', 'sonolens.app', 'sonolens.models', 'sonolens.training'))]; "
            "print(bad); sys.exit(1 if bad else 0)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_only_the_command_line_module_imports_the_pipeline():
    """The import contract: ``simulator.cli`` alone may import ``sonolens.pipeline`` (its MP4 writer, errors)."""
    importers = {}
    for path in sorted(SIMULATOR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            pipeline = [n for n in _imported_modules(node) if n == "sonolens.pipeline" or
                        n.startswith("sonolens.pipeline.")]
            if pipeline:
                importers.setdefault(path.name, set()).update(pipeline)
    assert importers == {"cli.py": {"sonolens.pipeline.errors", "sonolens.pipeline.videoio"}}


def _imported_modules(node: ast.AST) -> list[str]:
    """Absolute names a statement of a ``sonolens.simulator`` module imports (``[]`` for other statements)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = ".".join(["sonolens", "simulator"][: 3 - node.level]) if node.level else ""
    module = ".".join(p for p in (base, node.module or "") if p)
    return [module] if node.module else [f"{module}.{a.name}" for a in node.names]
