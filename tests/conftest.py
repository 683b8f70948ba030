"""Shared fixtures. Tests that need ../shared skip cleanly when it is absent (a newcomer's checkout)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SONOLENS_SHARED", REPO.parent / "shared"))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


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

    Nothing committed pretends to be a trained model: tests export this at test time.
    """
    from sonolens.models.export import export_random_student

    out = tmp_path_factory.mktemp("model") / "random_student.onnx"
    export_random_student(out, seed=0)
    return out
