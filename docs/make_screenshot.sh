#!/usr/bin/env bash
# Remakes docs/screenshot.png with the command the README's caption names: the viewer on the bundled demo sample
# (assets/sample_videos/busi_demo.mp4) with the bundled default model, grabbed after 300 frames (10 s: the first
# malignant still). Under Xvfb where it is installed, else Qt's offscreen platform (what CI and this machine have).
set -euo pipefail
cd "$(dirname "$0")/.."
CMD=(sonolens view --exit-after-frames 300 --screenshot docs/screenshot.png)
if command -v xvfb-run >/dev/null 2>&1; then
    xvfb-run -a -s "-screen 0 1600x1000x24" "${CMD[@]}"
else
    QT_QPA_PLATFORM=offscreen "${CMD[@]}"
fi
echo "wrote docs/screenshot.png"
