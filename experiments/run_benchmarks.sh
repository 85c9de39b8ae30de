#!/usr/bin/env bash
# Every benchmark behind experiments/RESULTS.md (resumable: re-run to continue), then the tables.
#   bash experiments/run_benchmarks.sh [ENV:PLANNER ...]   # default: the list below, in this order
# Each run writes experiments/results/bench/<env>-<planner>[-route][-readout][-keepout]/{summary.json,...}.
# PLANNER "<planner>[+route][+readout][+keepout]" (e.g. cem+route+keepout) adds the route energy, the
# probe-read goal term (--readout-goal) and/or the keep-out guardrail, on the same episodes as the
# plain planner; "+budgeth" tells the MPC loop the step budget (plans end with the episode).
# PLANNER "icem-48" is iCEM with a smaller budget (48 samples, 6 elites): the
# speed point under the 0.25 s re-plan target (issue 6); "gd-10" is gradient descent with 10 Adam
# iterations instead of 20 (8 starts); "gd-4x10" halves that again (4 starts x 10 iterations), the
# push-T gradient planner's point at that target on the 64-token model, and "gd-4x8" cuts its
# iterations to 8 (budgets picked by FLOPs per re-plan, not by success). PLANNER "zero" / "random" are the
# floors that act without a world model (`wmplan bench --planner zero|random`).
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-1}
RUNS=${*:-pusht:cem pusht:cem+keepout pusht:gd maze:cem maze:cem+keepout maze:gd chips:cem chips:gd pusht:icem pusht:mppi pusht:cem-gd maze:icem maze:mppi maze:cem-gd maze:mppi+keepout maze:icem-48 maze:cem+route maze:gd+route maze:cem+route+keepout maze:mppi+route+keepout pusht:cem+readout pusht:gd-10 pusht:gd-4x10 pusht:gd-4x8 pusht:zero pusht:random maze:zero maze:random chips:zero chips:random}
for run in $RUNS; do
  env=${run%%:*} name=${run#*:} settings='{}' flags=()
  planner=${name%%+*}
  [[ "$name" != *+route* ]] || flags+=(--route)
  [[ "$name" != *+readout* ]] || flags+=(--readout-goal)
  [[ "$name" != *+keepout* ]] || flags+=(--guardrail)
  [[ "$name" != *+budgeth* ]] || flags+=(--budget-horizon)
  if [ "$planner" = icem-48 ]; then planner=icem settings='{"num_samples": 48, "num_elites": 6}'; fi
  if [ "$planner" = gd-10 ]; then planner=gd settings='{"num_starts": 8, "iterations": 10}'; fi
  if [ "$planner" = gd-4x10 ]; then planner=gd settings='{"num_starts": 4, "iterations": 10}'; fi
  if [ "$planner" = gd-4x8 ]; then planner=gd settings='{"num_starts": 4, "iterations": 8}'; fi
  wmplan bench --env "$env" --planner "$planner" --planner-settings "$settings" ${flags[@]+"${flags[@]}"} --threads "$THREADS" \
    --quiet --out "experiments/results/bench/$env-${name//+/-}"
done
python experiments/make_results.py
