"""Writes ``htj2k_48x64.j2c``: a lossless HTJ2K codestream of the synthetic grey frame ``htj2k_frame()`` below.

Made once with ``imagecodecs.htj2k_encode`` (OpenJPH), which only this script needs: the tests read the committed
codestream and wrap it in a DICOM file, so CI needs no HTJ2K encoder. Run: ``python tests/pipeline/data/make_htj2k.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CODESTREAM = HERE / "htj2k_48x64.j2c"


def htj2k_frame() -> np.ndarray:
    """A 48×64 grey ramp with a bright block top-left (so orientation and offsets show)."""
    frame = np.repeat((np.arange(64, dtype=np.uint8) * 3)[None, :], 48, axis=0)
    frame[4:12, 4:20] = 250
    return frame


def main() -> None:
    import imagecodecs

    data = imagecodecs.htj2k_encode(htj2k_frame())
    assert np.array_equal(imagecodecs.htj2k_decode(data), htj2k_frame()), "not lossless"
    CODESTREAM.write_bytes(data)
    print(f"{CODESTREAM.name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
