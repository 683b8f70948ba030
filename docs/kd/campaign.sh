#!/usr/bin/env bash
# #21: knowledge distillation for the shipped Lite0 student. Trains the EfficientNet-Lite2 teacher
# (training/configs/busi_uclm_lite2_teacher.yaml), then the Lite0 student distilled from it for seeds 0-2
# (busi_uclm_lite0_kd.yaml) — the pairs of the no-teacher runs runs/union_nomarks_s{0,1,2} (docs/loho/union.sh).
# Re-running resumes: a finished run (summary.json) is skipped, an interrupted one continues from its last.pt.
#   nohup bash docs/kd/campaign.sh > runs/kd_campaign.log 2>&1 &
# Environment: SEEDS (default "0 1 2"), SONOLENS (default "sonolens").
set -euo pipefail
SONOLENS=${SONOLENS:-sonolens}

train() {  # MODE CONFIG NAME [key=value ...]: one run, resumed from its last.pt, skipped when finished
  local mode=$1 config=$2 name=$3; shift 3
  local run="runs/${name}" resume=()
  [[ -f "${run}/summary.json" ]] && return 0
  [[ -f "${run}/last.pt" ]] && resume=("resume=${run}/last.pt")
  $SONOLENS train "${mode}" --config "${config}" "name=${name}" "$@" "${resume[@]}"
}

train teacher training/configs/busi_uclm_lite2_teacher.yaml union_lite2_teacher
for seed in ${SEEDS:-0 1 2}; do
  train distill training/configs/busi_uclm_lite0_kd.yaml "union_kd_s${seed}" "seed=${seed}"
done
