"""U-maze benchmark: start/goal pairs sampled by the env (free cells, jitter, >= 0.5 apart), a
100-step budget (the clean expert needs at most 25 on U-maze), success = distance <= 0.45 judged
by the simulator at the end of the budget."""

from experiments.configs import CPU_PLANNERS
from wmplan.bench import BenchSpec
from wmplan.evaluate import EvalConfig
from wmplan.mpc import MPCConfig

BENCH = BenchSpec(
    env="maze",
    eval=EvalConfig(episodes=50, budget=100, goal_source="env"),
    mpc=MPCConfig(horizon=5, execute_steps=1),
    checkpoint="experiments/checkpoints/maze/world_model.pt",
    planners=CPU_PLANNERS,
    metric_keys=("distance", "success_05"),
    env_kwargs={"layout": "umaze"},
)
