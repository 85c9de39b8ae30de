#!/usr/bin/env bash
# Every benchmark behind experiments/RESULTS.md (resumable: re-run to continue), then the tables.
#   bash experiments/run_benchmarks.sh [ENV:PLANNER ...]   # default: the list below, in this order
# Each run writes experiments/results/bench/<env>-<planner>[-keepout]/{summary.json,episodes.csv,...}.
# PLANNER "cem+keepout" is CEM with the keep-out guardrail on the same episodes as plain CEM.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-1}
RUNS=${*:-pusht:cem pusht:cem+keepout pusht:gd maze:cem maze:cem+keepout maze:gd chips:cem chips:gd pusht:icem pusht:mppi pusht:cem-gd maze:icem maze:mppi maze:cem-gd}
for run in $RUNS; do
  env=${run%%:*} planner=${run#*:}
  if [ "$planner" = cem+keepout ]; then
    wmplan bench --env "$env" --planner cem --guardrail --threads "$THREADS" --quiet --out "experiments/results/bench/$env-cem-keepout"
  else
    wmplan bench --env "$env" --planner "$planner" --threads "$THREADS" --quiet --out "experiments/results/bench/$env-$planner"
  fi
done
python experiments/make_results.py
