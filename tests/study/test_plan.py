"""``study.protocol`` (validation), ``study.plan`` (the counterbalanced Latin square, checked against a hand-written
table) and ``sonolens study plan`` (the plan folder and its worklists) — no Qt, no model."""

from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from sonolens.pipeline.errors import ConfigError
from sonolens.study.cli import cli_main
from sonolens.study.plan import check_balance, make_plan, stratified_split
from sonolens.study.protocol import Condition, load_protocol
from sonolens.study.worklist import load_worklist

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 16  # the loader only checks that a case's file exists


def _cases(folder: Path, truths: dict[str, str]) -> list[dict]:
    """One tiny file per case under ``folder/cases`` and the protocol's ``cases`` entries (paths relative)."""
    (folder / "cases").mkdir(exist_ok=True)
    out = []
    for cid, truth in truths.items():
        (folder / "cases" / f"{cid}.png").write_bytes(PNG)
        out.append({"id": cid, "path": f"cases/{cid}.png", "truth": truth})
    return out


def _write(folder: Path, d: dict, name: str = "protocol.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(d, sort_keys=False), encoding="utf-8")
    return path


def _protocol(folder: Path, truths: dict[str, str] | None = None, **fields) -> Path:
    """A valid protocol file (2 readers, conditions ai/off, default labels) with ``fields`` overriding."""
    truths = truths or {"c1": "malignant", "c2": "malignant", "c3": "benign", "c4": "normal"}
    d = {"study": "demo", "seed": 3, "readers": ["R1", "R2"], "conditions": ["ai", "off"],
         "questionnaires": [], "cases": _cases(folder, truths), **fields}
    return _write(folder, d)


def _error(path: Path) -> str:
    with pytest.raises(ConfigError) as err:
        make_plan(load_protocol(path))
    text = str(err.value)
    assert text and "\n" not in text, text
    return text


# -- protocol validation ------------------------------------------------------------------------------------------

def test_a_valid_protocol_loads_with_its_defaults(tmp_path):
    p = load_protocol(_protocol(tmp_path))
    assert p.study == "demo" and p.seed == 3
    assert p.labels == ("normal", "benign", "malignant") and p.positive == "malignant"
    assert p.readers == ("R1", "R2")
    assert p.conditions == (Condition("ai", "ai"), Condition("off", "off"))
    assert p.design == "crossed" and p.groups == 1 and p.sessions == 2
    assert [c.id for c in p.cases] == ["c1", "c2", "c3", "c4"]
    assert p.case("c3").truth == "benign"
    assert p.case("c3").path == (tmp_path / "cases" / "c3.png").resolve()


def test_unknown_key_is_refused_with_a_suggestion(tmp_path):
    good = yaml.safe_load(_protocol(tmp_path).read_text())
    d = {**good, "sesions": 2}
    with pytest.raises(ConfigError, match=r"unknown key 'sesions'; did you mean 'sessions'\?"):
        load_protocol(_write(tmp_path, d))
    d = yaml.safe_load(yaml.safe_dump(good))
    d["cases"][1]["turth"] = d["cases"][1].pop("truth")
    with pytest.raises(ConfigError, match=r"unknown key 'turth'; did you mean 'truth'\?"):
        load_protocol(_write(tmp_path, d))


def test_missing_case_file_is_refused(tmp_path):
    path = _protocol(tmp_path)
    (tmp_path / "cases" / "c2.png").unlink()
    with pytest.raises(ConfigError, match=r"case c2: no such file or folder: .*c2\.png"):
        load_protocol(path)


def test_truth_not_among_the_labels_is_refused(tmp_path):
    path = _protocol(tmp_path, {"c1": "malignant", "c2": "cyst"})
    with pytest.raises(ConfigError, match=r"case c2: truth 'cyst' is not one of the labels"):
        load_protocol(path)


def test_truth_is_read_case_insensitively(tmp_path):
    p = load_protocol(_protocol(tmp_path, {"c1": "Malignant", "c2": " BENIGN"}))
    assert [c.truth for c in p.cases] == ["malignant", "benign"]


def test_duplicate_case_id_is_refused(tmp_path):
    path = _protocol(tmp_path)
    d = yaml.safe_load(path.read_text())
    d["cases"][3]["id"] = "c1"
    with pytest.raises(ConfigError, match=r"case id 'c1' appears twice"):
        load_protocol(_write(tmp_path, d))


def test_reader_id_with_a_space_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"reader 'Dr Smith'"):
        load_protocol(_protocol(tmp_path, readers=["R1", "Dr Smith"]))


def test_readers_given_as_a_number(tmp_path):
    assert load_protocol(_protocol(tmp_path, readers=3)).readers == ("R01", "R02", "R03")


def test_unquoted_off_condition_is_read_as_off(tmp_path):
    cases = yaml.safe_dump({"cases": _cases(tmp_path, {"c1": "benign", "c2": "malignant"})})
    path = tmp_path / "p.yaml"
    path.write_text(f"study: demo\nreaders: [R1, R2]\nquestionnaires: []\nconditions: [ai, off]\n{cases}")
    assert yaml.safe_load(path.read_text())["conditions"] == ["ai", False]  # what YAML 1.1 makes of it
    p = load_protocol(path)
    assert p.conditions == (Condition("ai", "ai"), Condition("off", "off"))


def test_custom_condition_with_a_display(tmp_path):
    p = load_protocol(_protocol(tmp_path, conditions=["off", {"name": "second_look", "display": "ai"}]))
    assert p.conditions == (Condition("off", "off"), Condition("second_look", "ai"))
    assert p.condition("second_look").display == "ai"
    with pytest.raises(ConfigError, match=r"display must be one of ai, blinded, off"):
        load_protocol(_protocol(tmp_path, conditions=["off", {"name": "second_look", "display": "heatmap"}]))
    with pytest.raises(ConfigError, match=r"condition 'maybe'"):
        load_protocol(_protocol(tmp_path, conditions=["ai", "maybe"]))


def test_split_plot_with_two_groups_loads(tmp_path):
    p = load_protocol(_protocol(tmp_path, design="split-plot", groups=2, readers=["R1", "R2", "R3", "R4"]))
    assert p.design == "split-plot" and p.groups == 2


# -- impossible plans ---------------------------------------------------------------------------------------------

def test_fewer_cases_than_blocks_is_refused(tmp_path):
    text = _error(_protocol(tmp_path, {"c1": "benign"}))
    assert "1 cases cannot fill 2 blocks" in text


def test_split_plot_groups_need_their_own_blocks(tmp_path):
    # 3 cases in 2 groups: 1 case for a group that needs 2 blocks (one per condition)
    text = _error(_protocol(tmp_path, {"c1": "benign", "c2": "malignant", "c3": "normal"}, design="split-plot",
                            groups=2))
    assert "cannot fill 4 blocks" in text


def test_sessions_must_equal_the_number_of_conditions(tmp_path):
    text = _error(_protocol(tmp_path, sessions=3))
    assert "sessions: 3 for 2 conditions" in text


def test_more_groups_than_readers_is_refused(tmp_path):
    text = _error(_protocol(tmp_path, design="split-plot", groups=3))
    assert "2 readers cannot fill 3 groups" in text


def test_groups_with_a_crossed_design_is_refused(tmp_path):
    text = _error(_protocol(tmp_path, groups=2))
    assert "only a split-plot design has reader groups" in text


# -- the Latin square, hand-checked -------------------------------------------------------------------------------

SQUARE_TRUTHS = {"b1": "benign", "b2": "benign", "b3": "benign", "m1": "malignant", "m2": "malignant",
                 "m3": "malignant"}

# Written out by hand from plan.py's rule: reader i (0-based) reads block b (A=0, B=1, C=2) in session s (0-based)
# under condition (b + s + i) mod 3 of (ai, blinded, off), and starts a session with block floor(i / 3) mod 3 — so
# R1, R2, R3 all read A B C in that order:
#   R1 (i=0): s1 A→ai B→blinded C→off;   s2 A→blinded B→off C→ai;   s3 A→off B→ai C→blinded
#   R2 (i=1): s1 A→blinded B→off C→ai;   s2 A→off B→ai C→blinded;   s3 A→ai B→blinded C→off
#   R3 (i=2): s1 A→off B→ai C→blinded;   s2 A→ai B→blinded C→off;   s3 A→blinded B→off C→ai
SQUARE = {
    ("R1", 1): [("A", "ai"), ("B", "blinded"), ("C", "off")],
    ("R1", 2): [("A", "blinded"), ("B", "off"), ("C", "ai")],
    ("R1", 3): [("A", "off"), ("B", "ai"), ("C", "blinded")],
    ("R2", 1): [("A", "blinded"), ("B", "off"), ("C", "ai")],
    ("R2", 2): [("A", "off"), ("B", "ai"), ("C", "blinded")],
    ("R2", 3): [("A", "ai"), ("B", "blinded"), ("C", "off")],
    ("R3", 1): [("A", "off"), ("B", "ai"), ("C", "blinded")],
    ("R3", 2): [("A", "ai"), ("B", "blinded"), ("C", "off")],
    ("R3", 3): [("A", "blinded"), ("B", "off"), ("C", "ai")],
}


def _square_protocol(folder: Path, seed: int = 7) -> Path:
    return _protocol(folder, SQUARE_TRUTHS, seed=seed, labels=["benign", "malignant"], readers=["R1", "R2", "R3"],
                     conditions=["ai", "blinded", "off"])


def _sessions(readings) -> dict[tuple[str, int], list]:
    out = defaultdict(list)
    for r in sorted(readings, key=lambda r: (r.reader, r.session, r.order)):
        out[(r.reader, r.session)].append(r)
    return out


def test_latin_square_matches_the_hand_written_table(tmp_path):
    readings = make_plan(load_protocol(_square_protocol(tmp_path)))
    assert len(readings) == 3 * 6 * 3
    sessions = _sessions(readings)
    assert set(sessions) == set(SQUARE)
    for key, rs in sessions.items():
        assert [r.order for r in rs] == [1, 2, 3, 4, 5, 6], key
        # two cases per block, blocks read one after the other
        got = [(r.block, r.condition) for r in rs[::2]]
        assert [(r.block, r.condition) for r in rs[1::2]] == got, key
        assert got == SQUARE[key], key
        assert [r.block_position for r in rs] == [1, 1, 2, 2, 3, 3], key
        assert all(r.group == 1 for r in rs)


def test_latin_square_balance(tmp_path):
    p = load_protocol(_square_protocol(tmp_path))
    readings = make_plan(p)
    conditions = {"ai", "blinded", "off"}
    # every reader reads every case exactly once per condition
    seen = Counter((r.reader, r.case, r.condition) for r in readings)
    assert set(seen) == {(rd, c, k) for rd in ("R1", "R2", "R3") for c in SQUARE_TRUTHS for k in conditions}
    assert set(seen.values()) == {1}
    # each session of each reader holds every condition once (one block of two cases each)
    for (reader, session), rs in _sessions(readings).items():
        assert Counter(r.condition for r in rs) == {"ai": 2, "blinded": 2, "off": 2}, (reader, session)
        assert sorted(r.case for r in rs) == sorted(SQUARE_TRUTHS)  # every case once in a session
    # across the readers, each block is first seen (session 1) under each condition once
    first_sight = {(r.reader, r.block): r.condition for r in readings if r.session == 1}
    for block in ("A", "B", "C"):
        assert {first_sight[(rd, block)] for rd in ("R1", "R2", "R3")} == conditions, block
    # across the readers, each condition once at each block position of each session
    for session in (1, 2, 3):
        for pos in (1, 2, 3):
            at = {r.reader: r.condition for r in readings if r.session == session and r.block_position == pos}
            assert sorted(at) == ["R1", "R2", "R3"] and set(at.values()) == conditions, (session, pos)
    # a block holds the same cases for every reader and session, one case of each class (stratified)
    blocks = defaultdict(set)
    for r in readings:
        blocks[r.block].add(r.case)
    assert sorted(blocks) == ["A", "B", "C"]
    assert sorted(c for b in blocks.values() for c in b) == sorted(SQUARE_TRUTHS)  # a partition of the cases
    for b, members in blocks.items():
        assert sorted(SQUARE_TRUTHS[c] for c in members) == ["benign", "malignant"], b
    check_balance(p, readings)


def test_plan_is_seeded(tmp_path):
    path = _square_protocol(tmp_path)
    a, b = make_plan(load_protocol(path)), make_plan(load_protocol(path))
    assert a == b
    other = make_plan(replace(load_protocol(path), seed=8))
    assert [(r.reader, r.session, r.case) for r in other] != [(r.reader, r.session, r.case) for r in a]
    # the seed changes the case order, never the square
    assert [(r.reader, r.session, r.block_position, r.condition) for r in other] == \
        [(r.reader, r.session, r.block_position, r.condition) for r in a]


def test_stratified_split_spreads_each_class(tmp_path):
    import numpy as np

    p = load_protocol(_protocol(tmp_path, {"n1": "normal", "n2": "normal", "b1": "benign", "b2": "benign",
                                           "m1": "malignant", "m2": "malignant"}))
    parts = stratified_split(p.cases, 3, np.random.default_rng(0))
    assert [len(x) for x in parts] == [2, 2, 2]
    assert sorted(c.id for x in parts for c in x) == ["b1", "b2", "m1", "m2", "n1", "n2"]
    for x in parts:  # two cases per block and three classes: never two of one class in a block
        assert len({c.truth for c in x}) == 2


def test_two_conditions_alternate_between_readers_and_sessions(tmp_path):
    readings = make_plan(load_protocol(_protocol(tmp_path)))
    first = {key: rs[0].condition for key, rs in _sessions(readings).items()}
    # hand: R1 s1 reads A(ai) then B(off); R2 s1 reads A(off) then B(ai); session 2 swaps the conditions
    assert first == {("R1", 1): "ai", ("R1", 2): "off", ("R2", 1): "off", ("R2", 2): "ai"}
    assert first[("R1", 1)] != first[("R2", 1)]
    assert first[("R1", 1)] != first[("R1", 2)] and first[("R2", 1)] != first[("R2", 2)]


# -- split-plot ---------------------------------------------------------------------------------------------------

def test_split_plot_each_case_read_by_one_group(tmp_path):
    truths = {f"b{i}": "benign" for i in range(4)} | {f"m{i}": "malignant" for i in range(4)}
    p = load_protocol(_protocol(tmp_path, truths, labels=["benign", "malignant"], design="split-plot", groups=2,
                                readers=["R1", "R2", "R3", "R4"]))
    readings = make_plan(p)
    check_balance(p, readings)
    # readers are dealt into groups in turn: R1, R3 → group 1; R2, R4 → group 2
    assert {r.reader: r.group for r in readings} == {"R1": 1, "R2": 2, "R3": 1, "R4": 2}
    readers_of = defaultdict(set)
    for r in readings:
        readers_of[r.case].add(r.reader)
    assert set(readers_of) == set(truths)
    for case, readers in readers_of.items():
        assert readers in ({"R1", "R3"}, {"R2", "R4"}), case
    for group in ({"R1", "R3"}, {"R2", "R4"}):
        mine = [c for c, rs in readers_of.items() if rs == group]
        assert sorted(truths[c] for c in mine) == ["benign", "benign", "malignant", "malignant"]
        for reader in group:  # every reader of the group reads each of its cases under both conditions
            assert Counter((r.case, r.condition) for r in readings if r.reader == reader) == \
                {(c, k): 1 for c in mine for k in ("ai", "off")}
    assert len(readings) == 4 * 4 * 2


def test_check_balance_catches_a_broken_plan(tmp_path):
    p = load_protocol(_protocol(tmp_path))
    readings = make_plan(p)
    check_balance(p, readings)
    with pytest.raises(AssertionError, match="twice under one condition"):
        check_balance(p, readings + [readings[0]])
    with pytest.raises(AssertionError, match="once per condition"):
        check_balance(p, readings[1:])


# -- sonolens study plan ------------------------------------------------------------------------------------------

def test_plan_cli_writes_the_plan_folder(tmp_path, capsys):
    proto = _protocol(tmp_path)
    out = tmp_path / "plan"
    assert cli_main(["plan", str(proto), "--out", str(out)]) == 0
    worklists = ["R1_s1.yaml", "R1_s2.yaml", "R2_s1.yaml", "R2_s2.yaml"]
    assert sorted(f.name for f in out.iterdir()) == sorted(
        ["plan.json", "readings.csv", "balance.txt", "protocol.yaml"] + worklists)
    assert (out / "protocol.yaml").read_text() == proto.read_text()

    plan = json.loads((out / "plan.json").read_text())
    assert plan["study"] == "demo" and plan["positive"] == "malignant"
    assert {c["id"]: c["truth"] for c in plan["cases"]} == {"c1": "malignant", "c2": "malignant", "c3": "benign",
                                                           "c4": "normal"}
    assert len(plan["readings"]) == 2 * 4 * 2
    with open(out / "readings.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [(r["reader"], r["session"], r["order"], r["case"], r["condition"]) for r in table] == \
        [(r["reader"], str(r["session"]), str(r["order"]), r["case"], r["condition"]) for r in plan["readings"]]

    for name in worklists:
        text = (out / name).read_text()
        assert "truth" not in text, name  # the participant's machine never sees the ground truth
        wl = load_worklist(out / name)
        reader, session = name[:-5].split("_s")
        assert (wl.reader, wl.session, wl.session_id) == (reader, int(session), f"demo_{reader}_s{session}")
        assert [b.display for b in wl.blocks] == [b.condition for b in wl.blocks]
        assert sorted(b.condition for b in wl.blocks) == ["ai", "off"]
        cases = [c for b in wl.blocks for c in b.cases]
        assert all(c.path.is_file() and c.path == (tmp_path / "cases" / f"{c.id}.png").resolve() for c in cases)
        mine = sorted((r for r in plan["readings"] if r["reader"] == reader and r["session"] == int(session)),
                      key=lambda r: r["order"])
        assert [(b.condition, c.id) for b in wl.blocks for c in b.cases] == [(r["condition"], r["case"])
                                                                             for r in mine]

    printed = capsys.readouterr().out
    # per condition, by hand: 2 readers × 4 cases = 8 readings, 4 per session, 4 at each block position,
    # 2 readers, 4 cases, truth mix normal 2 / benign 2 / malignant 4
    rows = {ln.split()[0]: ln.split()[1:] for ln in printed.splitlines() if ln.split()[:1] in (["ai"], ["off"])}
    assert rows == {k: ["8", "4", "4", "4", "4", "2", "4", "2", "2", "4"] for k in ("ai", "off")}
    assert "condition" in printed and "malignant" in printed
    balance = (out / "balance.txt").read_text().splitlines()
    assert balance[0].split()[0] == "condition" and [ln.split()[0] for ln in balance[1:]] == ["ai", "off"]
    assert all(ln in printed for ln in balance)

    before = (out / "plan.json").read_text()
    with pytest.raises(ConfigError, match="already holds a plan"):
        cli_main(["plan", str(proto), "--out", str(out)])
    assert (out / "plan.json").read_text() == before


def test_readers_beyond_the_square_rotate_the_block_order(tmp_path):
    truths = {"b1": "benign", "b2": "benign", "m1": "malignant", "m2": "malignant"}
    readings = make_plan(load_protocol(_protocol(tmp_path, truths, labels=["benign", "malignant"],
                                                 readers=["R1", "R2", "R3", "R4"])))
    first = {key: (rs[0].block, rs[0].condition) for key, rs in _sessions(readings).items()}
    # hand, from (b + s + i) mod 2 and the first block floor(i / 2) mod 2 (A=0, B=1; ai=0, off=1); e.g. R3 (i=2)
    # starts with B (floor(2/2) = 1) in session 1 (s=0): (1 + 0 + 2) mod 2 = 1 = off
    assert first == {("R1", 1): ("A", "ai"), ("R1", 2): ("A", "off"), ("R2", 1): ("A", "off"), ("R2", 2): ("A", "ai"),
                     ("R3", 1): ("B", "off"), ("R3", 2): ("B", "ai"), ("R4", 1): ("B", "ai"), ("R4", 2): ("B", "off")}
    # so over the four readers each condition opens session 1 twice, and block A is first seen twice under each
    assert Counter(c for (_, s), (_, c) in first.items() if s == 1) == {"ai": 2, "off": 2}
