"""Chip-sweeping benchmark: goal regions and start piles sampled by the env, 20 pushes per episode,
success = >= 90% of chip centres inside the goal square, judged by the simulator at the end."""

from experiments.configs import CPU_PLANNERS
from wmplan.bench import BenchSpec
from wmplan.evaluate import EvalConfig
from wmplan.mpc import MPCConfig

BENCH = BenchSpec(
    env="chips",
    eval=EvalConfig(episodes=50, budget=20, goal_source="env"),
    mpc=MPCConfig(horizon=3, execute_steps=1),
    checkpoint="experiments/checkpoints/chips/world_model.pt",
    planners=CPU_PLANNERS,
    metric_keys=("fraction_inside", "chamfer_mm", "n_off_table"),
)
