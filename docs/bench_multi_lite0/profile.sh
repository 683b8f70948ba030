#!/usr/bin/env bash
# Where the one-process runner's time goes with three 960×720 streams (README.md's percentages): py-spy samples
# every thread of `sonolens run C1 C2 C3 --realtime --threads 1` (pip install py-spy); the share of samples whose
# innermost frame is each function, and the share that pass through a few functions of interest.
#   bash docs/bench_multi_lite0/profile.sh
set -euo pipefail
PYTHON=${PYTHON:-python3}
T=$(mktemp -d)
"$PYTHON" -m sonolens simulate sweep --size 960x720 --fps 30 --seconds 12 --seed 0 --out "$T/c1.mp4" --quiet >/dev/null
cp "$T/c1.mp4" "$T/c2.mp4"; cp "$T/c1.mp4" "$T/c3.mp4"
py-spy record -o "$T/raw.txt" -f raw -r 200 --threads --nonblocking -- \
  "$PYTHON" -m sonolens run "$T/c1.mp4" "$T/c2.mp4" "$T/c3.mp4" --realtime --threads 1 --json "$T/r.json" >/dev/null
"$PYTHON" - "$T/raw.txt" <<'PY'
import sys
from collections import Counter
leaf, through, total = Counter(), Counter(), 0
KEYS = ("Session.run", "VideoSource._to_rgb", "Preprocessor.__call__", "resize_gray", "to_gray")
for line in open(sys.argv[1]):
    stack, n = line.rsplit(" ", 1)
    frames, n = stack.split(";"), int(n)
    total += n
    leaf[frames[-1].split(" (")[0]] += n
    for k in KEYS:
        through[k] += n if any(f.split(" (")[0] == k for f in frames) else 0
print(f"{total} samples")
for k in KEYS:
    print(f"through {k}: {100 * through[k] / total:.0f} %")
for k, v in leaf.most_common(8):
    print(f"innermost {k}: {100 * v / total:.0f} %")
PY
rm -rf "$T"
