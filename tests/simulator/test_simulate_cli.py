"""``sonolens simulate`` (``simulator/cli.py``) and the committed sample clips it made."""

from __future__ import annotations

from pathlib import Path

import av
from decode_clip import decode_clip

from sonolens.simulator.cli import SAMPLES, cli_main

REPO = Path(__file__).resolve().parents[2]


def test_simulate_cli_writes_a_clip(tmp_path):
    out = tmp_path / "sub" / "cyst.mp4"
    assert cli_main(["cyst", "--seconds", "1", "--out", str(out), "--size", "160x120", "--fps", "15",
                     "--quiet"]) == 0
    frames, stream, _ = decode_clip(out)
    assert len(frames) == 15 and frames[0].shape == (120, 160, 3) and stream.average_rate == 15


def test_simulate_cli_errors_are_one_line(tmp_path, capsys):
    from sonolens.cli import main

    out = str(tmp_path / "x.mp4")
    assert main(["simulate", "tumour", "--out", out]) == 2
    assert main(["simulate", "cyst", "--out", out, "--size", "big"]) == 2
    assert main(["simulate", "cyst", "--out", out, "--fps", "0", "--quiet"]) == 2   # the renderer refuses it
    assert main(["simulate", "--bench", "tumour"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and all(line.startswith("sonolens: error:") for line in err), err
    assert "valid kinds" in err[0] and "--size" in err[1] and "fps" in err[2] and "valid kinds" in err[3]
    assert not (tmp_path / "x.mp4").exists()


# ----------------------------------------------------------------------------------------------- sample clips
def test_committed_sample_clips_match_the_recipe():
    folder = REPO / "assets" / "sample_videos"
    total = 0
    for name, (_kind, _, seconds) in SAMPLES.items():
        path = folder / name
        assert path.exists(), f"{path} missing: run sonolens simulate --samples {folder}"
        total += path.stat().st_size
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            assert (s.width, s.height, s.average_rate) == (640, 480, 30)
            assert s.frames == round(seconds * 30)
    assert total < 10e6
    readme = (folder / "README.md").read_text()
    assert "SIMULATION" in readme.upper() and "sonolens simulate --samples" in readme
