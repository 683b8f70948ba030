"""``sonolens study plan PROTOCOL --out PLAN/``: who reads which case, under which condition, in which session and
order — counterbalanced, randomised from the protocol's seed — written as one worklist per reader and session.

The design (fully crossed: every reader reads every case; split-plot: readers in ``groups``, each group its own
stratified share of the cases, every case read by one group):

* each reader reads each of their cases once per condition, in ``sessions`` = C sessions (C conditions) separated
  by the washout; every session holds every condition once, a block of cases each;
* a reader's cases are split into C blocks, stratified by ground truth (so every block has the same mix);
* reader i reads block b in session s under condition (b + s + i) mod C — a cyclic Latin square per reader:
  across the sessions every block meets every condition once; and across readers, the condition under which a
  block is first seen (and the condition a session starts with) rotates, so neither is tied to one condition;
* readers C, C + 1, … also rotate the order of the blocks within a session (reader i starts with block
  ⌊i / C⌋ mod C): with two conditions, readers 1 and 2 read block A first, readers 3 and 4 block B;
* case order within each block is shuffled per reader, session and block from the seed (``numpy`` PCG64 seeded with
  ``[seed, group, reader, session, block]``: the same protocol gives the same plan on any machine).

Over readers 1…C the conditions are balanced at every block position of every session; with C > 2 the square
balances position but not carry-over (a Williams square would). The balance table says what it balances. An
impossible plan (fewer cases than blocks, fewer readers than groups, sessions ≠ conditions) is refused with a
one-line reason.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sonolens.pipeline.errors import ConfigError

from .protocol import Case, Protocol

BLOCK_NAMES = "ABCDEFGH"
PLAN_FILE = "plan.json"  # what the report reads: the protocol as resolved, and every planned reading
READINGS_CSV = "readings.csv"


@dataclass(frozen=True)
class Reading:
    """One planned reading: a reader reads a case under a condition, at a position of a session."""

    reader: str
    group: int
    session: int  # 1-based
    block: str
    block_position: int  # 1-based: the block's place in the session
    condition: str
    order: int  # 1-based: the case's place in the session
    case: str


def session_id(study: str, reader: str, session: int) -> str:
    return f"{study}_{reader}_s{session}"


def _check_feasible(p: Protocol) -> None:
    n_cond = len(p.conditions)
    if n_cond > len(BLOCK_NAMES):
        raise ConfigError(f"{n_cond} conditions: at most {len(BLOCK_NAMES)}")
    if p.sessions != n_cond:
        raise ConfigError(f"sessions: {p.sessions} for {n_cond} conditions — each session reads every block once "
                          f"under another condition, so sessions must equal the number of conditions ({n_cond})")
    groups = p.groups if p.design == "split-plot" else 1
    if p.design == "crossed" and p.groups != 1:
        raise ConfigError("groups: only a split-plot design has reader groups (design: split-plot)")
    if len(p.readers) < groups:
        raise ConfigError(f"{len(p.readers)} readers cannot fill {groups} groups")
    per_group = len(p.cases) // groups
    if per_group < n_cond:
        raise ConfigError(f"{len(p.cases)} cases cannot fill {groups * n_cond} blocks ({groups} group(s) × "
                          f"{n_cond} conditions): need at least {groups * n_cond}")


def stratified_split(cases: Sequence[Case], parts: int, rng: np.random.Generator) -> list[list[Case]]:
    """``cases`` dealt into ``parts`` lists whose sizes differ by at most one and whose truth mixes match as
    closely as the counts allow: each class shuffled, then dealt round-robin, the deal continuing across classes."""
    by_truth: dict[str, list[Case]] = defaultdict(list)
    for c in cases:
        by_truth[c.truth].append(c)
    out: list[list[Case]] = [[] for _ in range(parts)]
    k = 0
    for truth in sorted(by_truth):
        members = list(by_truth[truth])
        rng.shuffle(members)
        for c in members:
            out[k % parts].append(c)
            k += 1
    return out


def _reader_sessions(p: Protocol, group: int, ri: int, reader: str, blocks: list[list[Case]]) -> list[Reading]:
    n = len(p.conditions)
    out: list[Reading] = []
    for s in range(p.sessions):
        order = 0
        for pos in range(n):
            b = (pos + ri // n) % n
            cond = p.conditions[(b + s + ri) % n].name
            cases = list(blocks[b])
            np.random.default_rng([p.seed, group, ri, s, b]).shuffle(cases)
            for c in cases:
                order += 1
                out.append(Reading(reader, group + 1, s + 1, BLOCK_NAMES[b], pos + 1, cond, order, c.id))
    return out


def make_plan(p: Protocol) -> list[Reading]:
    """Every planned reading of the protocol (``ConfigError`` when the design cannot be met)."""
    _check_feasible(p)
    rng = np.random.default_rng([p.seed, 0xB10C])
    groups = p.groups if p.design == "split-plot" else 1
    case_groups = stratified_split(p.cases, groups, rng)
    readings: list[Reading] = []
    for g, cases in enumerate(case_groups):
        blocks = stratified_split(cases, len(p.conditions), rng)
        members = [r for i, r in enumerate(p.readers) if i % groups == g]
        for ri, reader in enumerate(members):
            readings += _reader_sessions(p, g, ri, reader, blocks)
    return readings


def balance_rows(p: Protocol, readings: Sequence[Reading]) -> list[list[str]]:
    """The balance table: per condition, readings per session and per position of its block in the session, the
    readers and cases it covers, and the truth mix."""
    n = len(p.conditions)
    head = (["condition", "readings"] + [f"session {s + 1}" for s in range(p.sessions)]
            + [f"block {k + 1} of {n}" for k in range(n)] + ["readers", "cases"] + list(p.labels))
    truth = {c.id: c.truth for c in p.cases}
    rows = [head]
    for cond in p.conditions:
        mine = [r for r in readings if r.condition == cond.name]
        sess, pos = Counter(r.session for r in mine), Counter(r.block_position for r in mine)
        mix = Counter(truth[r.case] for r in mine)
        rows.append([cond.name, str(len(mine))] + [str(sess[s + 1]) for s in range(p.sessions)]
                    + [str(pos[k + 1]) for k in range(n)] + [str(len({r.reader for r in mine})),
                                                             str(len({r.case for r in mine}))]
                    + [str(mix[lab]) for lab in p.labels])
    return rows


def format_table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows)


def check_balance(p: Protocol, readings: Sequence[Reading]) -> None:
    """The design's promises, checked on the plan itself (a bug here must never reach a reader)."""
    seen = Counter((r.reader, r.case, r.condition) for r in readings)
    if any(v != 1 for v in seen.values()):
        raise AssertionError("a reader reads a case twice under one condition")
    per_reader_case = Counter((r.reader, r.case) for r in readings)
    if any(v != len(p.conditions) for v in per_reader_case.values()):
        raise AssertionError("a reader does not read a case once per condition")
    per_session = Counter((r.reader, r.session, r.case) for r in readings)
    if any(v != 1 for v in per_session.values()):
        raise AssertionError("a reader meets a case twice in one session")
