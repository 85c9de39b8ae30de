"""experiments/training_cost.py times `wmplan train` on the token grid the shipped recipe trains on."""

from experiments.training_cost import _shipped_pool_grid, _shipped_steps


def test_the_recipe_grid_and_step_counts_come_from_the_shipped_manifests():
    # push-T's checkpoint is trained on every patch (`--pool-grid 0`); the maze's on its encoder's grid
    assert _shipped_pool_grid("pusht") == 0
    assert _shipped_pool_grid("maze") is None
    assert _shipped_steps("pusht") == {"train": 12000, "pretrain-encoder": 2000}
    assert _shipped_pool_grid("no-such-env") is None and _shipped_steps("no-such-env") == {}
