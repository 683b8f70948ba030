"""The simulator itself (``sonolens.simulator``): determinism, the rendered physics, errors, dependencies."""

from __future__ import annotations

import ast
import hashlib
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from sonolens.simulator import KINDS, Phantom, PhantomError

SIMULATOR = Path(__file__).resolve().parents[2] / "simulator"
SMALL = (320, 240)

# sha256 of a few frames (and their lesion boxes) of every kind with the scanner screen's *text left out*
# (``cv2.putText`` a no-op): the tissue, the layout, the ticks, the grey bar and the markers, exactly. Identical with
# OpenCV 4.10, 5.0 and 5.1 and numpy 2.0-2.4 on x86-64. Glyph rasterisation is what changes between OpenCV releases
# (5.1 draws 30 % less ink than 4.10), so the text is checked apart, with a tolerance
# (``test_screen_text_is_drawn_where_it_belongs``). A change here means every clip changes: the sample clips in
# assets/ would have to be remade and this table updated, on purpose.
GOLDEN = {
    "normal": "a6c57e82694875d62b60bcee9bf68d705d63d04c8bab50d3260bedbf15149140",
    "cyst": "2dc9e2c0337e363f56f541078d8cccc409f483c5b7453f71e1f99bd7442316a5",
    "benign": "e7ddb5f6a2d53e531d9449e3c75127475a2b23c83db08de0bbb93511f7084673",
    "malignant": "7045a9c603f3041242b2931184f9b1ba1f9cd0473f53931cb19fd6ef96705302",
    "sweep": "96a2909412ef697e438b597039e836c133aa82144e4856211044cc233cbfed67",
}


@pytest.fixture
def no_text(monkeypatch):
    """``cv2.putText`` draws nothing while the test runs (the screen is built when a ``Phantom`` is made)."""
    monkeypatch.setattr(cv2, "putText", lambda img, *args, **kwargs: img)


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
def test_rendering_is_unchanged(kind, no_text):
    assert set(GOLDEN) == set(KINDS)
    assert _fingerprint(kind) == GOLDEN[kind]


def test_screen_text_is_drawn_where_it_belongs(monkeypatch):
    """The text OpenCV draws: only outside the B-mode image, a share of the label bar and of the frame within a
    band that holds from OpenCV 4.10 (label bar 13.6 %, frame 1.57 %) to 5.1 (8.7 %, 1.05 %)."""
    with_text = Phantom("benign", seed=7, size=(640, 480), seconds=2.0)
    monkeypatch.setattr(cv2, "putText", lambda img, *args, **kwargs: img)
    without = Phantom("benign", seed=7, size=(640, 480), seconds=2.0)
    ink = np.abs(with_text.render(30).astype(int) - without.render(30).astype(int)).max(axis=2) > 0
    x, y, w, h = with_text.layout.image_rect
    assert not ink[y:y + h, x:x + w].any()                      # no text on the tissue
    assert 0.05 < ink[:y].mean() < 0.22, ink[:y].mean()         # the label bar
    assert 0.006 < ink.mean() < 0.025, ink.mean()               # settings, depth labels, clock


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
