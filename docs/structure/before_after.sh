#!/usr/bin/env bash
# #26 "nothing a user sees changes": `sonolens bench --quick` on the commit before the restructuring (8b699ab) and
# on the commit after it (a08281a: the app, training and bench commits, nothing else), interleaved (pre, post, pre,
# post) so that a drift of the machine hits both, the same student file for all four runs; then the table.
#   bash docs/structure/before_after.sh            (≈ 6 minutes on 2 cores; git worktrees and runs under out/)
# Environment: PYTHON (default: .venv/bin/python, with the [dev] extra installed).
set -euo pipefail
REPO=$(pwd)
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
STUDENT=$REPO/models/weights/busi_student.onnx  # the MobileNetV3 both commits shipped
OUT=${OUT:-$REPO/out/bench26}
TREES=$REPO/out/worktrees
mkdir -p "$OUT"
for v in pre26:8b699ab post26:a08281a; do
  [ -d "$TREES/${v%%:*}" ] || git worktree add -f "$TREES/${v%%:*}" "${v##*:}"
done
for r in 1 2; do
  for v in pre26 post26; do
    (cd "$TREES/$v" && PYTHONPATH="$TREES/$v" "$PYTHON" -m sonolens bench --quick --student "$STUDENT" \
      --sections models,gradcam,pipeline,scaling --out-dir "$OUT/$v-$r" > "$OUT/$v-$r.log" 2>&1)
  done
done
"$PYTHON" docs/structure/summarise.py "$OUT" > docs/structure/before_after.md
