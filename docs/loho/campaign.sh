#!/usr/bin/env bash
# The leave-one-hospital-out campaign (docs/loho/README.md): every recipe trained on BUSI and on BUS-UCLM, seed by
# seed, each run evaluated on the hospital it did not see. Re-running resumes: a finished run (summary.json) is
# skipped, an interrupted one continues from its last.pt, an eval already written is kept.
#   nohup bash docs/loho/campaign.sh > runs/loho_campaign.log 2>&1 &
# Environment: SEEDS (default "0 1 2"), RECIPES (default "scanner export nomarks"), SONOLENS (default "sonolens").
set -euo pipefail
SONOLENS=${SONOLENS:-sonolens}
mkdir -p runs/loho
for seed in ${SEEDS:-0 1 2}; do
  for recipe in ${RECIPES:-scanner export nomarks}; do
    for hospital in busi bus_uclm; do
      name="loho_${recipe}_${hospital}_s${seed}"
      run="runs/${name}"
      if [[ ! -f "${run}/summary.json" ]]; then
        resume=()
        [[ -f "${run}/last.pt" ]] && resume=("resume=${run}/last.pt")
        $SONOLENS train baseline --config "training/configs/loho_lite0_${recipe}.yaml" "name=${name}" "seed=${seed}" \
          "data.split_csv=training/split_csv/loho_${hospital}.csv" "${resume[@]}"
      fi
      if [[ ! -f "runs/loho/${name}.json" ]]; then
        $SONOLENS eval --model "${run}/best.pt" --data ../shared/datasets \
          --split-file "training/split_csv/loho_${hospital}.csv" --split heldout --n-boot 200 \
          --json "runs/loho/${name}.json" > "runs/loho/${name}.txt"
      fi
    done
  done
done
$SONOLENS loho summary runs/loho/*.json --md docs/loho/loho.md --json docs/loho/loho.json
