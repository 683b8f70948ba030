"""iMRMC input files: ``study.imrmc.write_imrmc`` / ``read_imrmc`` — no Qt, no model.

The example file is iMRMC's own ``test-reorder-data.imrmc`` (DIDSR/iMRMC, commit 4a065cd2, public domain; notice in
its header); the counts below were taken from that file by hand, not from the reader under test.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from sonolens.pipeline.errors import ConfigError
from sonolens.study.imrmc import ImrmcSummary, read_imrmc, write_imrmc

EXAMPLE = Path(__file__).parent / "data" / "test-reorder-data.imrmc"

TRUTH = {"c1": "malignant", "c2": "benign", "c3": "normal", "c4": "malignant"}
# hand-written confidences per (reader, condition), for cases c1..c4; (R2, off, c3) has none
SCORES = {
    ("R1", "ai"): [0.9, 0.2, 0.1, 0.75],
    ("R1", "off"): [0.8, 0.3, 0.2, 1],
    ("R2", "ai"): [0.7, 0.4, 0.05, 0.6],
    ("R2", "off"): [0.6, 0.5, None, 0.55],
    ("R3", "ai"): [0.95, 0.1, 0.3, 0.85],
    ("R3", "off"): [0.65, 0.35, 0.25, 0.45],
}


def _table() -> list[dict]:
    """3 readers × 4 cases × 2 conditions, tidy: one dict per reading."""
    rows = []
    for (reader, cond), scores in SCORES.items():
        for case, score in zip(TRUTH, scores):
            rows.append({"reader": reader, "case": case, "condition": cond, "truth": TRUTH[case],
                         "confidence": score, "participant": "ignored"})
    return rows


def _file(tmp_path: Path, data_lines: list[str], header: tuple[str, ...] = ("hand-made",)) -> Path:
    p = tmp_path / "bad.imrmc"
    p.write_text("\n".join([*header, "BEGIN DATA:", *data_lines]) + "\n")
    return p


GOOD = ["-1,n1,0,0", "-1,n2,0,0", "-1,p1,0,1", "r1,n1,A,0.1", "r1,n2,A,0.2", "r1,p1,A,0.9"]


# ------------------------------------------------------------------------------------------ iMRMC's own file


def test_reads_imrmc_example_file():
    d = read_imrmc(EXAMPLE)
    # truth rows: case1, case2 and 3..25 are 0, 26..29 are 1
    assert len(d.truth) == 29
    assert sum(d.truth.values()) == 4
    assert d.truth["case1"] == 0 and d.truth["25"] == 0 and d.truth["26"] == 1 and d.truth["29"] == 1
    # " reader 1 " and "reader1" are one reader once iMRMC deletes whitespace; readers "2", "3", "4"
    assert d.readers == ("reader1", "2", "3", "4")
    # the truth rows' modality IDs ("modality should not", "matter_for_truth", "0") are not modalities
    assert d.modalities == ("modality1", "2")
    # every reader reads all 29 cases in both modalities: 4 × 29 × 2
    assert len(d.scores) == 232
    assert d.scores[("reader1", "6", "modality1")] == 0.0  # written "reader 1,6,modality 1,0.000000"
    assert d.scores[("2", "5", "modality1")] == 1.0  # one of the three rows moved to the end of the file
    assert d.scores[("2", "9", "2")] == 0.0 and d.scores[("3", "9", "2")] == 0.0
    assert d.scores[("4", "9", "2")] == 1.0
    # the header: our 32-line notice plus the original 17 lines; the original's title line survives
    assert len(d.header) == 49
    assert d.header[32] == "Simulated binary data"
    assert d.header[0].startswith("Copied for the sonolens tests")


def test_example_file_keeps_crlf_line_ends():
    raw = EXAMPLE.read_bytes()
    assert raw.count(b"\r\n") == raw.count(b"\n") == 311


# ------------------------------------------------------------------------------------------ writing


def test_round_trip_and_exact_text(tmp_path):
    out = tmp_path / "study.imrmc"
    summary = write_imrmc(out, _table(), positive="malignant", description="Test study\nsonolens export")
    assert summary == ImrmcSummary(readers=3, cases=4, positives=2, negatives=2, modalities=2, rows=23,
                                   skipped_no_score=1)
    lines = out.read_text().split("\n")
    assert lines[:16] == [
        "Test study",
        "sonolens export",
        "NR: 3",
        "N0: 2",
        "N1: 2",
        "NM: 2",
        "BEGIN DATA:",
        "truth,c1,truth,1",
        "truth,c2,truth,0",
        "truth,c3,truth,0",
        "truth,c4,truth,1",
        "R1,c1,ai,0.9",
        "R1,c2,ai,0.2",
        "R1,c3,ai,0.1",
        "R1,c4,ai,0.75",
        "R1,c1,off,0.8",
    ]
    assert lines[16] == "R1,c2,off,0.3" and lines[18] == "R1,c4,off,1.0"
    assert "R2,c3,off" not in out.read_text()  # the reading without a score is left out
    assert lines[-1] == "" and len(lines) == 7 + 4 + 23 + 1

    d = read_imrmc(out)
    assert d.truth == {"c1": 1, "c2": 0, "c3": 0, "c4": 1}
    assert d.readers == ("R1", "R2", "R3")
    assert d.modalities == ("ai", "off")
    assert d.header == ("Test study", "sonolens export", "NR: 3", "N0: 2", "N1: 2", "NM: 2")
    expected = {(r, c, m): float(s) for (r, m), scores in SCORES.items() for c, s in zip(TRUTH, scores)
                if s is not None}
    assert len(expected) == 23
    assert d.scores == expected


def test_nan_score_is_skipped_like_none(tmp_path):
    rows = _table()
    rows[0]["confidence"] = math.nan
    s = write_imrmc(tmp_path / "s.imrmc", rows, positive="malignant")
    assert (s.rows, s.skipped_no_score) == (22, 2)
    assert ("R1", "c1", "ai") not in read_imrmc(tmp_path / "s.imrmc").scores


def test_write_refuses_duplicate_reading(tmp_path):
    rows = _table()
    rows.append(dict(rows[5]))
    with pytest.raises(ConfigError, match=r"reading 24: reader 'R1' read case 'c2' under condition 'off' twice"):
        write_imrmc(tmp_path / "s.imrmc", rows, positive="malignant")
    assert not (tmp_path / "s.imrmc").exists()


@pytest.mark.parametrize("truth", [None, "", math.nan])
def test_write_refuses_missing_truth(tmp_path, truth):
    rows = _table()
    rows[2]["truth"] = truth
    with pytest.raises(ConfigError, match=r"reading 2: case 'c3' has no truth"):
        write_imrmc(tmp_path / "s.imrmc", rows, positive="malignant")


def test_write_refuses_conflicting_truth(tmp_path):
    rows = _table()
    rows[4]["truth"] = "benign"  # R1/off/c1, malignant in reading 0
    with pytest.raises(ConfigError, match=r"case 'c1' has truth 'benign' here but 'malignant'"):
        write_imrmc(tmp_path / "s.imrmc", rows, positive="malignant")


@pytest.mark.parametrize("key, value, problem", [
    ("reader", "Dr A", "contains ' '"),
    ("case", "c,1", "contains ','"),
    ("condition", "a\ti", "contains '\\\\t'"),
    ("case", 'c"1', "contains '\"'"),
    ("reader", "truth", "reserved"),
    ("reader", "-1", "reserved"),
    ("condition", "truth", "reserved"),
    ("case", "", "empty case ID"),
])
def test_write_refuses_ids_imrmc_would_misread(tmp_path, key, value, problem):
    rows = _table()
    rows[0][key] = value
    with pytest.raises(ConfigError, match=problem):
        write_imrmc(tmp_path / "s.imrmc", rows, positive="malignant")


def test_write_refuses_study_without_positives_and_bad_description(tmp_path):
    with pytest.raises(ConfigError, match="no case has truth 'Malignant'"):
        write_imrmc(tmp_path / "s.imrmc", _table(), positive="Malignant")
    with pytest.raises(ConfigError, match="'N1:'"):
        write_imrmc(tmp_path / "s.imrmc", _table(), positive="malignant", description="Cohort N1: pilot")
    with pytest.raises(ConfigError, match=r"\*\.imrmc"):
        write_imrmc(tmp_path / "s.txt", _table(), positive="malignant")


# ------------------------------------------------------------------------------------------ reading: failures


def test_hand_made_file_reads(tmp_path):
    d = read_imrmc(_file(tmp_path, GOOD, header=("title", "NR: 1", "N0: 2", "N1: 1", "NM: 1")))
    assert d.truth == {"n1": 0, "n2": 0, "p1": 1}
    assert d.scores == {("r1", "n1", "A"): 0.1, ("r1", "n2", "A"): 0.2, ("r1", "p1", "A"): 0.9}


def test_read_refuses_reader_row_for_case_without_truth(tmp_path):
    p = _file(tmp_path, [*GOOD, "r1,x9,A,0.5"])
    with pytest.raises(ConfigError, match=r"line 9: case 'x9' .* has no truth row"):
        read_imrmc(p)


def test_read_refuses_non_numeric_score(tmp_path):
    p = _file(tmp_path, [*GOOD[:5], "r1,p1,A,high"])
    with pytest.raises(ConfigError, match=r"line 8: score 'high' .* is not a finite number"):
        read_imrmc(p)


@pytest.mark.parametrize("score", ["NaN", "Infinity", "1_0", "0x1p3"])
def test_read_refuses_non_finite_or_non_decimal_scores(tmp_path, score):
    with pytest.raises(ConfigError, match="not a finite number"):
        read_imrmc(_file(tmp_path, [*GOOD[:5], f"r1,p1,A,{score}"]))


def test_read_refuses_file_without_begin_data(tmp_path):
    p = tmp_path / "no-marker.imrmc"
    p.write_text("title\nNR: 1\n" + "\n".join(GOOD) + "\n")
    with pytest.raises(ConfigError, match="no line starts with 'BEGIN DATA:'"):
        read_imrmc(p)


def test_read_refuses_duplicate_reading_and_truth(tmp_path):
    with pytest.raises(ConfigError, match=r"line 9: reader 'r1' read case 'n1' in modality 'A' twice "
                                          r"\(first on line 6\)"):
        read_imrmc(_file(tmp_path, [*GOOD, "r1, n1 ,A,0.3"]))
    with pytest.raises(ConfigError, match=r"line 5: second truth row for case 'n1' \(first on line 3\)"):
        read_imrmc(_file(tmp_path, ["-1,n1,0,0", "-1,n2,0,0", "truth,n1,truth,0", *GOOD[2:]]))


@pytest.mark.parametrize("value", ["2", "1.0", "yes"])
def test_read_refuses_truth_other_than_0_or_1(tmp_path, value):
    with pytest.raises(ConfigError, match=rf"line 5: truth of case 'p1' is '{value}'"):
        read_imrmc(_file(tmp_path, [*GOOD[:2], f"-1,p1,0,{value}", *GOOD[3:]]))


def test_read_refuses_header_counts_that_disagree(tmp_path):
    with pytest.raises(ConfigError, match=r"line 3: the header says N0: 3 but the data hold 2 negative cases"):
        read_imrmc(_file(tmp_path, GOOD, header=("title", "NR: 1", "N0: 3")))
    with pytest.raises(ConfigError, match=r"line 2 .* contains 'NR:' but is not 'NR: <integer>'"):
        read_imrmc(_file(tmp_path, GOOD, header=("title", "Readers NR: 1")))


def test_read_refuses_wrong_field_count_and_one_character_line(tmp_path):
    with pytest.raises(ConfigError, match=r"line 3 'r1,n1,0.1': 3 comma-separated fields"):
        read_imrmc(_file(tmp_path, ["r1,n1,0.1", *GOOD]))
    with pytest.raises(ConfigError, match=r"line 8 'r1,p1,A,0.9,x': 5 comma-separated fields"):
        read_imrmc(_file(tmp_path, [*GOOD[:5], "r1,p1,A,0.9,x"]))
    with pytest.raises(ConfigError, match=r"line 2 '-' has one character"):
        read_imrmc(_file(tmp_path, GOOD, header=("title", "-")))


def test_read_follows_imrmc_trailing_comma_rule(tmp_path):
    # InputFile.java cuts a line ending in ",," at its first ",," and then drops one trailing ","
    d = read_imrmc(_file(tmp_path, [*GOOD[:5], "r1,p1,A,0.9,,"]))
    assert d.scores[("r1", "p1", "A")] == 0.9
    with pytest.raises(ConfigError, match=r"line 8 'r1,p1,,A,0.9,,': 2 comma-separated fields"):
        read_imrmc(_file(tmp_path, [*GOOD[:5], "r1,p1,,A,0.9,,"]))  # cut at the first ",,": "r1,p1"


def test_read_refuses_study_without_positive_case(tmp_path):
    with pytest.raises(ConfigError, match="2 negative and 0 positive cases"):
        read_imrmc(_file(tmp_path, ["-1,n1,0,0", "-1,n2,0,0", "r1,n1,A,0.1", "r1,n2,A,0.2"]))
