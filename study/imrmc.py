"""A reader study's readings as an input file of the FDA's iMRMC software, and a validator that reads such a file
the way iMRMC does.

iMRMC (https://github.com/DIDSR/iMRMC) runs the multi-reader multi-case (MRMC) ROC analysis of a reader study: the
AUC of each modality, averaged over readers, with a variance that accounts for both readers and cases. This module
writes its ``.imrmc`` input and checks one.

**The format.** Everything here follows iMRMC's own parser, ``src/mrmc/core/InputFile.java`` (repository
DIDSR/iMRMC, commit 037c0653292da8b6a77bdf8570942f9ab8967400: ``ReadInputFile``, ``getExperimentSizeFromHeader``,
``parseObserverData``, ``verifySizesAndGetIDs``, ``processScoresAndTruth``), and the R package's reader,
``Rpackage/iMRMC/R/doAUCMRMC.R`` (commit 22f87b53e8aeb9834b755012ef610fd99a242e1c, ``doAUCmrmc``):

* Lines are split at ``\\n``, ``\\r\\n`` or ``\\r`` (Java's ``readLine``). Before anything else, a line ending in
  ``,,`` is cut at its first ``,,``, then one trailing ``,`` is dropped. A line of exactly one character makes
  the Java reader stop reading (an index error it catches): the rest of the file is silently ignored.
* Every line before the first line that *starts* with ``BEGIN DATA:`` (any case) is free-text header; the first
  line is the study's title. A header line containing ``NR:``, ``N0:``, ``N1:`` or ``NM:`` (any case, anywhere)
  is read as a count — readers, negative cases, positive cases, modalities — taken from its 4th character on, so
  it must be written ``NR: 5`` at the start of the line; anything else there is an error. iMRMC compares these
  counts with the data and only notes a difference (then uses the data); all four are optional.
* Each line after ``BEGIN DATA:`` is one row ``readerID,caseID,modalityID,score``: split at commas, trailing empty
  fields dropped, fewer than 4 fields is an error ("Invalid input"), a 5th field is ignored by the Java reader
  (the R reader's ``read.csv``, given 4 column names, fails or misreads it). All whitespace is deleted from each field
  (``replaceAll("\\\\s", "")``): ``reader 1`` and ``reader1`` are the same reader. IDs are strings, compared
  exactly (``01`` is not ``1``).
* A row whose reader ID is ``truth`` or ``-1`` gives a case's truth: score ``0`` (negative) or ``1`` (positive),
  compared as text; its modality ID is ignored by the Java reader. The R reader finds truth rows by the modality
  ID ``truth`` and requires both a reader and a modality named ``truth``. One truth row per case ("Duplicate case
  found"); truth rows may stand anywhere among the data rows.
* Every other row is a reading: its case must have a truth row ("No truth for case"), its score is a number
  (``Double.valueOf``), and a (reader, case, modality) appears once ("Replicate observation found"). The study
  design need not be fully crossed. (The Java reader then leaves out every reader × modality with fewer than 3
  negative or fewer than 3 positive readings; it warns only below 2.)

Examples in the repository: ``standalone_application/FilesTest-iMRMC/test.imrmc`` (commit
e1abccd5d5fc129eeeea9b948d93988dd4678dd1: ``NR: 5``, ``N0: 50``, ``N1: 50``, ``NM: 2`` header lines, truth rows
``-1,<case>,0,<0|1>``), ``Rpackage/iMRMC/tests/testthat/input.imrmc`` (commit
a6f9bbe9d512d900294b1c4e1badf6352b7adfe4: no count lines, truth rows ``truth,<case>,truth,<0|1>``) and
``standalone_application/FilesTest-iMRMC/test-reorder-data.imrmc`` (commit 4a065cd2d6c1856cb1cf1e789ae9150b0a306465:
whitespace inside fields, rows out of order, CRLF line ends; copied to ``tests/study/data/``). iMRMC is public
domain (17 U.S.C. § 105, per its source headers); its repository also carries an MIT licence.

**What ``write_imrmc`` writes:** the description's lines, ``NR:``, ``N0:``, ``N1:``, ``NM:`` lines that match the
data, ``BEGIN DATA:``, one truth row ``truth,<case>,truth,<0|1>`` per case (the form both the Java and the R reader
accept) in order of first appearance, then one row per scored reading in the table's order, score as Python's
shortest round-trip decimal (``0.75``, ``3.0``, ``1e-05``). IDs are never rewritten: an ID with whitespace, a comma
or a double quote (which R's ``read.csv`` reads as a quote), an empty ID, ``NA`` (R's missing value), a reader named
``truth`` or ``-1`` or a condition named ``truth`` is refused — deleting whitespace as iMRMC does could merge two
readers into one.

**What ``read_imrmc`` refuses** (``ConfigError`` naming the line): everything the Java reader refuses, plus what it
lets through only to fail or mislead later — a header count that disagrees with the data, a 5th field, an empty ID,
a score that is not a plain finite decimal (Java's ``Double.valueOf`` also reads ``NaN``, ``Infinity``, ``0x1p3``,
``1.0d``), a file without a reading, without a negative or without a positive case.
"""

from __future__ import annotations

import math
import numbers
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sonolens.pipeline.errors import ConfigError
from sonolens.pipeline.outputs import write_text_atomic

__all__ = ["BEGIN_DATA", "ImrmcData", "ImrmcSummary", "TRUTH_ID", "read_imrmc", "write_imrmc"]

BEGIN_DATA = "BEGIN DATA:"
TRUTH_ID = "truth"  # reader and modality ID of the truth rows written
TRUTH_READERS = ("truth", "-1")  # reader IDs InputFile.java reads as truth
COUNT_TAGS = ("NR:", "N0:", "N1:", "NM:")
COUNT_NAMES = {"NR": "readers", "N0": "negative cases", "N1": "positive cases", "NM": "modalities"}
RESERVED_IDS = {"reader": ("truth", "-1", "NA"), "case": ("NA",), "condition": ("truth", "NA")}
SUFFIXES = (".imrmc", ".csv")  # the Java GUI opens .imrmc, .omrmc (summaries) and .csv files
FIELDS = ("reader ID", "case ID", "modality ID")

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_JAVA_SPACE = re.compile(r"[ \t\n\x0b\f\r]")  # Java's \s
_JAVA_TRIM = "".join(map(chr, range(33)))  # what Java's String.trim() removes
_INTEGER = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


@dataclass(frozen=True)
class ImrmcSummary:
    """What ``write_imrmc`` wrote: readers and modalities with at least one scored reading, cases (truth rows) and
    how many are positive or negative, ``rows`` (reading rows, truth rows not counted) and the readings left out for
    want of a score."""

    readers: int
    cases: int
    positives: int
    negatives: int
    modalities: int
    rows: int
    skipped_no_score: int


@dataclass(frozen=True)
class ImrmcData:
    """A checked iMRMC input file: truth per case (0/1), score per (reader, case, modality), readers and modalities
    in order of first appearance, and the header lines (before ``BEGIN DATA:``) as written."""

    truth: dict[str, int]
    scores: dict[tuple[str, str, str], float]
    readers: tuple[str, ...]
    modalities: tuple[str, ...]
    header: tuple[str, ...]


@dataclass(frozen=True)
class _Row:
    line: int
    reader: str
    case: str
    modality: str
    value: str


# ---------------------------------------------------------------------------------------------------- writing


def write_imrmc(path: str | os.PathLike, readings: Sequence[Mapping[str, Any]], *, positive: str,
                score_key: str = "confidence", description: str = "") -> ImrmcSummary:
    """Write ``readings`` (dicts with ``reader``, ``case``, ``condition``, ``truth`` and ``score_key``) as an iMRMC
    input file, atomically; a case is positive when its ``truth`` equals ``positive``. Readings without a score
    (None or NaN) are left out and counted. One-line ``ConfigError`` on a duplicate (reader, case, condition), a
    case without truth or with two truths, an ID iMRMC would misread, or a study without a scored reading, a
    positive or a negative case."""
    p = Path(path)
    if p.suffix not in SUFFIXES:
        raise ConfigError(f"iMRMC input file {p}: name it *.imrmc (iMRMC opens only {', '.join(SUFFIXES)} files)")
    header = _description_lines(description)
    truth, rows, skipped = _collect(readings, positive, score_key)
    summary = ImrmcSummary(readers=len({r[0] for r in rows}), cases=len(truth), positives=sum(truth.values()),
                           negatives=len(truth) - sum(truth.values()), modalities=len({r[2] for r in rows}),
                           rows=len(rows), skipped_no_score=skipped)
    _check_study(summary, positive)
    write_text_atomic(p, _render(header, summary, truth, rows), "iMRMC input file")
    return summary


def _description_lines(description: str) -> list[str]:
    """The description as header lines; refuses a line iMRMC would read as a count, as the data marker, or as a
    one-character line (which stops its reader)."""
    lines = _LINE_BREAK.split(description.rstrip("\r\n")) if description.strip() else []
    for n, line in enumerate(lines, 1):
        upper = line.upper()
        tag = next((t for t in COUNT_TAGS if t in upper), None)
        if tag:
            raise ConfigError(f"description line {n} {line!r}: iMRMC reads any line containing {tag!r} as a count; "
                              "reword it")
        if "BEGIN DATA" in upper:
            raise ConfigError(f"description line {n} {line!r}: 'BEGIN DATA' marks the start of the data; reword it")
        if len(line) == 1:
            raise ConfigError(f"description line {n} {line!r}: iMRMC's reader stops at a one-character line")
    return lines


def _collect(readings: Sequence[Mapping[str, Any]], positive: str, score_key: str,
             ) -> tuple[dict[str, int], list[tuple[str, str, str, str]], int]:
    """Truth per case (1 = positive), the reading rows to write and how many readings had no score."""
    labels: dict[str, str] = {}
    seen: set[tuple[str, str, str]] = set()
    rows: list[tuple[str, str, str, str]] = []
    skipped = 0
    for i, rec in enumerate(readings):
        reader, case, cond = _reading_ids(rec, i, score_key)
        if (reader, case, cond) in seen:
            raise ConfigError(f"reading {i}: reader {reader!r} read case {case!r} under condition {cond!r} twice")
        seen.add((reader, case, cond))
        _note_truth(labels, case, rec["truth"], i)
        score = _score_text(rec[score_key], i, score_key)
        if score is None:
            skipped += 1
        else:
            rows.append((reader, case, cond, score))
    return {case: int(label == positive) for case, label in labels.items()}, rows, skipped


def _reading_ids(rec: Any, i: int, score_key: str) -> tuple[str, str, str]:
    """The (reader, case, condition) IDs of reading ``i``, checked."""
    if not isinstance(rec, Mapping):
        raise ConfigError(f"reading {i}: expected a mapping, got {type(rec).__name__}")
    missing = [k for k in ("reader", "case", "condition", "truth", score_key) if k not in rec]
    if missing:
        raise ConfigError(f"reading {i}: missing key(s) {', '.join(missing)}")
    return _id(rec["reader"], "reader", i), _id(rec["case"], "case", i), _id(rec["condition"], "condition", i)


def _id(value: Any, what: str, i: int) -> str:
    """``value`` as an iMRMC ID, or ConfigError: iMRMC deletes whitespace and splits at commas, R reads ``"`` as a
    quote and ``NA`` as missing, and ``truth``/``-1`` mark truth rows."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ConfigError(f"reading {i}: {what} ID must be a string, got {type(value).__name__}")
    text = str(value)
    if not text:
        raise ConfigError(f"reading {i}: empty {what} ID")
    bad = next((c for c in text if c.isspace() or c in ',"'), None)
    if bad is not None:
        raise ConfigError(f"reading {i}: {what} ID {text!r} contains {bad!r}; iMRMC IDs may not hold whitespace, "
                          "commas or double quotes (iMRMC would delete the whitespace and split at the comma)")
    if text in RESERVED_IDS[what]:
        raise ConfigError(f"reading {i}: {what} ID {text!r} is reserved in iMRMC files "
                          f"(reserved {what} IDs: {', '.join(RESERVED_IDS[what])})")
    return text


def _note_truth(labels: dict[str, str], case: str, label: Any, i: int) -> None:
    """Record the truth label of ``case``; ConfigError when it is missing or differs from an earlier reading's."""
    if not isinstance(label, str) or not label.strip():
        raise ConfigError(f"reading {i}: case {case!r} has no truth (got {label!r})")
    earlier = labels.setdefault(case, label)
    if earlier != label:
        raise ConfigError(f"reading {i}: case {case!r} has truth {label!r} here but {earlier!r} in an earlier reading")


def _score_text(score: Any, i: int, score_key: str) -> str | None:
    """The score as a decimal iMRMC and R both read, or None when it is missing (None or NaN)."""
    if score is None:
        return None
    if isinstance(score, bool) or not isinstance(score, numbers.Real):
        raise ConfigError(f"reading {i}: {score_key} must be a number or None, got {score!r}")
    x = float(score)
    if math.isnan(x):
        return None
    if math.isinf(x):
        raise ConfigError(f"reading {i}: {score_key} is {x}; iMRMC needs a finite score")
    return repr(x)


def _check_study(s: ImrmcSummary, positive: str) -> None:
    """ConfigError unless the file will hold a reading, a positive and a negative case (iMRMC's minimum)."""
    if s.positives == 0:
        raise ConfigError(f"no case has truth {positive!r}: an ROC analysis needs positive cases "
                          "(check the spelling of the positive class)")
    if s.negatives == 0:
        raise ConfigError(f"every case has truth {positive!r}: an ROC analysis needs negative cases too")
    if s.rows == 0:
        raise ConfigError(f"no reading has a score ({s.skipped_no_score} without): nothing to analyse")


def _render(header: list[str], s: ImrmcSummary, truth: dict[str, int],
            rows: list[tuple[str, str, str, str]]) -> str:
    """The file's text: header, count lines, the data marker, truth rows, reading rows; ``\\n`` line ends."""
    counts = [f"NR: {s.readers}", f"N0: {s.negatives}", f"N1: {s.positives}", f"NM: {s.modalities}"]
    lines = [*header, *counts, BEGIN_DATA]
    lines += [f"{TRUTH_ID},{case},{TRUTH_ID},{value}" for case, value in truth.items()]
    lines += [",".join(row) for row in rows]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------- reading


def read_imrmc(path: str | os.PathLike) -> ImrmcData:
    """Read and check an iMRMC input file as iMRMC's ``InputFile.java`` does (see the module docstring); one-line
    ``ConfigError`` naming the line and the problem."""
    p = Path(path)
    raw = _file_lines(p)
    lines = [_java_line(line, n, p) for n, line in enumerate(raw, 1)]
    begin = next((i for i, line in enumerate(lines) if line.upper().startswith(BEGIN_DATA)), None)
    if begin is None:
        raise ConfigError(f"{p}: no line starts with {BEGIN_DATA!r}; iMRMC reads the data rows after that line")
    counts = _header_counts(lines[:begin], p)
    rows = [_data_row(line, raw[n - 1], n, p) for n, line in enumerate(lines[begin + 1:], begin + 2)]
    truth = _truth(rows, p)
    scores, readers, modalities = _scores(rows, truth, p)
    found = {"NR": len(readers), "N0": len(truth) - sum(truth.values()), "N1": sum(truth.values()),
             "NM": len(modalities)}
    _check_counts(counts, found, p)
    _check_content(found, len(scores), p)
    return ImrmcData(truth=truth, scores=scores, readers=readers, modalities=modalities, header=tuple(raw[:begin]))


def _file_lines(p: Path) -> list[str]:
    """The file's lines as Java's ``readLine`` gives them (no trailing empty line after a final line break)."""
    try:
        text = p.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read iMRMC input file {p}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not UTF-8 text (byte {exc.start})") from None
    lines = _LINE_BREAK.split(text)
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _java_line(line: str, n: int, p: Path) -> str:
    """``line`` after InputFile.java's trailing-comma trimming; ConfigError for a one-character line."""
    if len(line) == 1:
        raise ConfigError(f"{p}: line {n} {line!r} has one character; iMRMC's reader stops there and ignores the rest "
                          "of the file")
    if line.endswith(",,"):
        line = line[:line.index(",,")]
    if line.endswith(","):
        line = line[:-1]
    return line


def _header_counts(header: list[str], p: Path) -> dict[str, tuple[int, int]]:
    """The ``NR:``/``N0:``/``N1:``/``NM:`` counts of the header as {tag: (count, line)}; the last one wins."""
    counts: dict[str, tuple[int, int]] = {}
    for n, line in enumerate(header, 1):
        upper = line.upper()
        for tag in COUNT_TAGS:
            if tag not in upper:
                continue
            text = upper[3:].strip(_JAVA_TRIM)
            if not _INTEGER.fullmatch(text):
                raise ConfigError(f"{p}: line {n} {line!r} contains {tag!r} but is not '{tag} <integer>' (iMRMC reads "
                                  "the count from the 4th character on)")
            counts[tag[:2]] = (int(text), n)
    return counts


def _data_row(line: str, shown: str, n: int, p: Path) -> _Row:
    """One data line (trimmed; ``shown`` as in the file) as a row of 4 fields with whitespace deleted; ConfigError
    for a wrong field count or an empty ID."""
    fields = line.split(",")
    while fields and fields[-1] == "":
        fields.pop()
    if len(fields) != 4:
        raise ConfigError(f"{p}: line {n} {shown!r}: {len(fields)} comma-separated fields, iMRMC expects 4 "
                          "(readerID,caseID,modalityID,score)")
    ids = [_JAVA_SPACE.sub("", f) for f in fields]
    for name, value in zip(FIELDS, ids):
        if not value:
            raise ConfigError(f"{p}: line {n} {shown!r}: empty {name}")
    return _Row(n, *ids)


def _truth(rows: list[_Row], p: Path) -> dict[str, int]:
    """Truth per case from the truth rows (reader ``truth`` or ``-1``), wherever they stand among the rows."""
    truth: dict[str, int] = {}
    where: dict[str, int] = {}
    for r in rows:
        if r.reader not in TRUTH_READERS:
            continue
        if r.case in truth:
            raise ConfigError(f"{p}: line {r.line}: second truth row for case {r.case!r} (first on line "
                              f"{where[r.case]})")
        if r.value not in ("0", "1"):
            raise ConfigError(f"{p}: line {r.line}: truth of case {r.case!r} is {r.value!r}; iMRMC reads only 0 "
                              "(negative) or 1 (positive)")
        truth[r.case], where[r.case] = int(r.value), r.line
    return truth


def _scores(rows: list[_Row], truth: dict[str, int], p: Path,
            ) -> tuple[dict[tuple[str, str, str], float], tuple[str, ...], tuple[str, ...]]:
    """Scores per (reader, case, modality), with readers and modalities in order of first appearance."""
    scores: dict[tuple[str, str, str], float] = {}
    first: dict[tuple[str, str, str], int] = {}
    for r in rows:
        if r.reader in TRUTH_READERS:
            continue
        if r.case not in truth:
            raise ConfigError(f"{p}: line {r.line}: case {r.case!r} (reader {r.reader!r}, modality {r.modality!r}) "
                              "has no truth row")
        key = (r.reader, r.case, r.modality)
        if key in scores:
            raise ConfigError(f"{p}: line {r.line}: reader {r.reader!r} read case {r.case!r} in modality "
                              f"{r.modality!r} twice (first on line {first[key]})")
        scores[key], first[key] = _score(r, p), r.line
    readers = tuple(dict.fromkeys(k[0] for k in scores))
    modalities = tuple(dict.fromkeys(k[2] for k in scores))
    return scores, readers, modalities


def _score(r: _Row, p: Path) -> float:
    """The row's score as a finite float; ConfigError for anything else."""
    x = float(r.value) if _DECIMAL.fullmatch(r.value) else math.nan
    if not math.isfinite(x):
        raise ConfigError(f"{p}: line {r.line}: score {r.value!r} of reader {r.reader!r}, case {r.case!r} is not a "
                          "finite number")
    return x


def _check_counts(counts: dict[str, tuple[int, int]], found: dict[str, int], p: Path) -> None:
    """ConfigError when a header count disagrees with the data (iMRMC notes it and goes on with the data's)."""
    for tag, (given, n) in counts.items():
        if given != found[tag]:
            raise ConfigError(f"{p}: line {n}: the header says {tag}: {given} but the data hold {found[tag]} "
                              f"{COUNT_NAMES[tag]}")


def _check_content(found: dict[str, int], n_scores: int, p: Path) -> None:
    """ConfigError unless the file holds a reading, a negative and a positive case."""
    if n_scores == 0:
        raise ConfigError(f"{p}: no reading rows after {BEGIN_DATA!r} (only truth rows)")
    if found["N0"] == 0 or found["N1"] == 0:
        raise ConfigError(f"{p}: {found['N0']} negative and {found['N1']} positive cases; an ROC analysis needs both")
