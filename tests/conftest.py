"""Shared fixtures. Tests that need ../shared skip cleanly when it is absent (a newcomer's checkout)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SONOLENS_SHARED", REPO.parent / "shared"))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Subprocesses of tests run here, not in the repository root, whose source folder ``sonolens/`` would shadow a
# non-editable install (CI's runtime-only step).
NEUTRAL_CWD = Path(__file__).resolve().parent


def shared_path(*parts: str) -> Path:
    """Path under ../shared, or skip the test when it is not there."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"{p} not available (../shared is absent)")
    return p


@pytest.fixture(scope="session")
def shared_videos() -> Path:
    return shared_path("videos")


@pytest.fixture(scope="session")
def busi_dir() -> Path:
    return shared_path("datasets", "busi")


@pytest.fixture(scope="session")
def random_student(tmp_path_factory) -> Path:
    """A randomly initialised MobileNetV3-Small student exported to ONNX with the fused CAM output.

    Nothing committed pretends to be a trained model: tests export this at test time. On a runtime-only install
    (``pip install .``, no torch: CI's edge-install step) the bundled MobileNetV3-Small student (``busi-mnv3``, the
    same architecture) stands in, so the runtime tests run against an ONNX file users get.
    """
    try:
        import torch  # noqa: F401
    except ImportError:
        return bundled_student("busi-mnv3")  # the bundled file of the random student's architecture
    from sonolens.models.onnx_export import export_random_student

    out = tmp_path_factory.mktemp("model") / "random_student.onnx"
    export_random_student(out, seed=0)
    return out


def bundled_student(name: str = "busi") -> Path:
    """A shipped breast student ONNX file of the installed package (default: the default model; skips the test
    when it is not installed)."""
    from sonolens.pipeline.engines import bundled_model_path

    path = bundled_model_path(name)
    if path is None:
        pytest.skip(f"the bundled model {name!r} is not installed")
    return path


def has_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


requires_torch = pytest.mark.skipif(not has_torch(), reason="needs the 'train' extra (torch)")


def assert_one_line_error(proc, *needles: str) -> str:
    """A finished ``sonolens`` subprocess failed the way users are promised: exit 2, one line on stderr that starts
    with ``sonolens: error:``, no traceback. Returns that line."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("sonolens: warning:")]
    assert len(lines) == 1 and lines[0].startswith("sonolens: error:"), proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


@pytest.fixture
def tmpfs(tmp_path):
    """``tmpfs(size="64k", ro=False) -> Path``: a small (or read-only) filesystem mounted for the test: a real full
    or read-only disk (tests run as root, so ``chmod`` proves nothing). Skips where mounting is not permitted."""
    import subprocess

    mounted: list[Path] = []

    def make(size: str = "64k", ro: bool = False) -> Path:
        d = tmp_path / f"mnt{len(mounted)}"
        d.mkdir()
        opts = f"size={size}" + (",ro" if ro else "")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(d)], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or r.returncode})")
        mounted.append(d)
        return d

    yield make
    for d in mounted:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)


def sonolens_proc(*args: str, timeout: float = 120, **kw):
    """Run ``python -m sonolens ARGS`` to the end, outside the checkout (see ``NEUTRAL_CWD``)."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "sonolens", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=NEUTRAL_CWD, **kw)
