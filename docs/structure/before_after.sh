#!/usr/bin/env bash
# #26 "nothing a user sees changes": `sonolens bench --quick` on the commit before the restructuring (8b699ab) and
# on the commit after it (a08281a: the app, training and bench commits, nothing else), interleaved (pre, post, pre,
# post) so that a drift of the machine hits both, the same student file for all four runs; then the table.
#   bash docs/structure/before_after.sh            (≈ 6 minutes on 2 cores; git worktrees under /tmp)
# Environment: PYTHON (default: .venv/bin/python, with the [dev] extra installed).
set -euo pipefail
REPO=$(pwd)
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
STUDENT=$REPO/models/weights/busi_student.onnx  # the MobileNetV3 both commits shipped
OUT=${OUT:-/tmp/bench26}
mkdir -p "$OUT"
for v in pre26:8b699ab post26:a08281a; do
  [ -d "/tmp/${v%%:*}" ] || git worktree add -f "/tmp/${v%%:*}" "${v##*:}"
done
for r in 1 2; do
  for v in pre26 post26; do
    (cd "/tmp/$v" && PYTHONPATH="/tmp/$v" "$PYTHON" -m sonolens bench --quick --student "$STUDENT" \
      --sections models,gradcam,pipeline,scaling --out-dir "$OUT/$v-$r" > "$OUT/$v-$r.log" 2>&1)
  done
done
"$PYTHON" docs/structure/summarise.py "$OUT" > docs/structure/before_after.md
