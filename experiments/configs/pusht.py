"""Push-T benchmark: DINO-WM's protocol (goal 25 env steps ahead on a held-out trajectory, 50-step
budget, success = DINO-WM's state criterion judged by the simulator at the end of the budget)."""

from experiments.configs import CPU_PLANNERS
from wmplan.bench import BenchSpec, ReadoutGoalSpec
from wmplan.evaluate import EvalConfig, KeepOutRegion
from wmplan.mpc import MPCConfig

BENCH = BenchSpec(
    env="pusht",
    eval=EvalConfig(episodes=50, budget=50, goal_source="rollout", goal_offset=25),
    mpc=MPCConfig(horizon=5, execute_steps=1),
    checkpoint="experiments/checkpoints/pusht/world_model.pt",
    planners=CPU_PLANNERS,
    metric_keys=("coverage", "block_pos_error", "block_angle_error"),
    keep_out=KeepOutRegion(x=150.0, y=350.0, radius=60.0),
    # `--readout-goal`: the block position the probe reads from the latents, per 50 mm, weight 3 (about
    # the proprio term's size at a task's start); the block angle is left out: the probe cannot read it
    readout_goal=ReadoutGoalSpec(names=("block_x", "block_y"), scale=50.0, weight=3.0),
)
