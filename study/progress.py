"""Where a reader's session stands, from its logs: which cases of each block are answered and which questionnaires
are filled in — so ``sonolens study run`` resumes after a crash at the next unanswered case, in a new log file of
the same session (one session per file stays the rule: the files share the worklist's ``session_id``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .log import read_sessions
from .worklist import WorkBlock, Worklist


@dataclass
class Progress:
    """Answered cases and filled-in forms of one worklist session, by block."""

    answered: dict[str, set[str]] = field(default_factory=dict)  # block -> case ids
    forms: dict[str, set[str]] = field(default_factory=dict)  # block -> questionnaire names
    logs: list[Path] = field(default_factory=list)

    def remaining(self, block: WorkBlock) -> list:
        done = self.answered.get(block.block, set())
        return [c for c in block.cases if c.id not in done]

    def forms_left(self, block: WorkBlock, names: tuple[str, ...]) -> list[str]:
        done = self.forms.get(block.block, set())
        return [n for n in names if n not in done]

    def block_done(self, wl: Worklist, block: WorkBlock) -> bool:
        return not self.remaining(block) and not self.forms_left(block, wl.questionnaires)


def session_progress(wl: Worklist, logs_dir: Path) -> Progress:
    """Read every log of ``wl``'s session under ``logs_dir`` (torn last lines of a crashed session are skipped)."""
    prog = Progress()
    if not logs_dir.is_dir():
        return prog
    for path in sorted(logs_dir.glob(f"{wl.session_id}_*.jsonl")):
        try:
            sessions = read_sessions(path)
        except Exception:  # noqa: BLE001 - an empty or foreign file is no progress
            continue
        for s in sessions:
            if s.header.get("session_id") != wl.session_id:
                continue
            prog.logs.append(path)
            block = str(s.header.get("block"))
            for e in s.events:
                if e.get("kind") == "call" and isinstance(e.get("case"), str):
                    prog.answered.setdefault(block, set()).add(e["case"])
                elif e.get("kind") == "questionnaire" and isinstance(e.get("form"), str):
                    prog.forms.setdefault(block, set()).add(e["form"])
    return prog


def next_log_path(logs_dir: Path, session_id: str, block: str) -> Path:
    """``<session>_<block>_<n>.jsonl`` with the first n not used yet (a resumed block gets a new file)."""
    n = 1
    while (path := logs_dir / f"{session_id}_{block}_{n}.jsonl").exists():
        n += 1
    return path


__all__ = ["Progress", "session_progress", "next_log_path"]
