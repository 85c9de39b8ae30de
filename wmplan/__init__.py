"""wmplan: action-conditioned world-model planning in robotics.

Pipeline (and package layout): envs/ -> wmplan.data -> wmplan.encoders -> wmplan.predictor ->
wmplan.world_model -> wmplan.planners + wmplan.costs -> agents/ -> wmplan.cli.
"""

__version__ = "0.1.0"
