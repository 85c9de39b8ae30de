"""Per-environment benchmark specs (`BENCH`), read by `wmplan bench` via `wmplan.bench.load_spec`."""

# Planner budgets sized for a 2-core CPU (target <= 0.25 s per re-plan with ~5 MFLOP predictor steps);
# the envs share them unless their config says otherwise.
CPU_PLANNERS = {
    "cem": dict(num_samples=128, num_elites=16, iterations=6),
    "icem": dict(num_samples=96, num_elites=12, iterations=6),
    "mppi": dict(num_samples=128, iterations=6),
    "gd": dict(num_starts=8, iterations=20),
    "cem-gd": {},
}
