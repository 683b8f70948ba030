#!/usr/bin/env bash
# Remakes docs/viewer_grid.png with the command the README's caption names: four bundled sample clips in one viewer
# window (a 2×2 grid, one stream per cell, one model for all), the bundled default model, grabbed once every stream
# displayed 300 frames (10 s: the demo sample's first malignant still; the shorter simulated clips loop). At the
# viewer's default size (1280×800), under Xvfb where it is installed, else on Qt's offscreen platform with a screen
# large enough for that size (its default screen is 800×800).
set -euo pipefail
cd "$(dirname "$0")/.."
S=assets/sample_videos
CMD=(sonolens view "$S/busi_demo.mp4" "$S/malignant.mp4" "$S/cyst.mp4" "$S/sweep.mp4" --loop
     --exit-after-frames 300 --screenshot docs/viewer_grid.png)
if command -v xvfb-run >/dev/null 2>&1; then
    xvfb-run -a -s "-screen 0 1600x1000x24" "${CMD[@]}"
else
    screens=$(mktemp --suffix .json)
    trap 'rm -f "$screens"' EXIT
    echo '{"screens": [{"name": "offscreen", "x": 0, "y": 0, "width": 1600, "height": 1000, "logicalDpi": 96,
           "logicalBaseDpi": 96, "dpr": 1}]}' > "$screens"
    QT_QPA_PLATFORM="offscreen:configfile=$screens" "${CMD[@]}"
fi
echo "wrote docs/viewer_grid.png"
