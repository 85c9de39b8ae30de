"""Chip-sweeping env: task metrics on hand-built states, push physics, rest, off-table, bad input."""

import numpy as np
import pytest

from envs.base import EnvInputError
from envs.chips import ChipsEnv, ChipsExpert
from envs.chips_scene import chamfer_mm, inside_mask

N = 30


@pytest.fixture(scope="module")
def env():
    e = ChipsEnv(n_chips=N)
    e.reset(seed=0)
    yield e
    e.close()


def _row(y=480.0):
    """30 chips spread along a row near the far edge, away from the middle of the table."""
    return np.stack([np.linspace(30, 480, N), np.full(N, y)], axis=1)


def test_chamfer_and_inside_mask():
    a = np.array([[0.0, 0.0], [10.0, 0.0]])
    assert chamfer_mm(a, a) == 0.0
    assert chamfer_mm(a, a + [0.0, 3.0]) == pytest.approx(6.0)  # 3 mm each way, summed
    region = np.array([50.0, 50.0, 20.0])
    assert inside_mask(np.array([[50.0, 50.0], [59.0, 41.0], [61.0, 50.0]]), region).tolist() == [True, True, False]


def test_goal_state_metrics_and_fraction(env):
    env.reset(seed=1)
    region = env.goal_region_mm
    info = env._task_info()
    env.set_state(env.goal_state)
    goal_info = env._task_info()
    assert goal_info["success"] and goal_info["fraction_inside"] == 1.0 and goal_info["chamfer_mm"] == 0.0
    # Move 4 of 30 chips (13 %) out of the square: 87 % inside is below the 90 % success bar.
    xy = env.chip_positions_mm(env.goal_state)[:, :2].copy()
    xy[:4] = region[:2] + [region[2], 0.0]
    env.set_state(env._state_from(xy, np.array([10.0, 10.0]), region))
    partial = env._task_info()
    assert partial["fraction_inside"] == pytest.approx(26 / 30) and not partial["success"]
    assert 0 < partial["chamfer_mm"] < info["chamfer_mm"] or info["fraction_inside"] > 0.5


def test_push_moves_chips_along_the_push_and_they_rest(env):
    env.reset(seed=0)
    xy = _row()
    xy[0] = (256.0, 256.0)
    env.set_state(env._state_from(xy, np.array([100.0, 100.0]), env.goal_region_mm))
    _, _, _, _, info = env.step(env.points_to_action([256.0, 200.0], [256.0, 350.0]))
    chip = env.chip_positions_mm()[0]
    # Ends in front of the board: board centre + half thickness (5) + chip radius (7.5), within a few mm.
    assert abs(chip[0] - 256.0) < 3.0 and 355.0 < chip[1] < 370.0
    assert info["max_chip_speed_mm_s"] < env.cfg.rest_speed_mm_s and not info["stacked"]
    np.testing.assert_allclose(info["board_xy_mm"], [256.0, 350.0], atol=1.0)
    assert np.all(np.abs(env.chip_positions_mm()[1:, 1] - 480.0) < 0.1)  # the others were not touched


def test_off_table_chips_are_counted(env):
    env.reset(seed=0)
    xy = _row(y=300.0)
    xy[:3] = [[490.0, 100.0], [490.0, 130.0], [490.0, 160.0]]
    env.set_state(env._state_from(xy, np.array([100.0, 100.0]), env.goal_region_mm))
    _, _, _, _, info = env.step(env.points_to_action([440.0, 130.0], [512.0, 130.0]))
    assert info["n_off_table"] >= 2
    assert np.isfinite(env.chip_positions_mm()).all()  # they stay in the state, beyond x = 512 mm


def test_expert_targets_the_farthest_outside_chip(env):
    env.reset(seed=2)
    expert = ChipsExpert(env, noise=0.0, random_frac=0.0)
    start, end = expert.plan_push()
    chip = expert.target_chip()
    centre = env.goal_region_mm[:2]
    direction = (centre - chip) / np.linalg.norm(centre - chip)
    np.testing.assert_allclose((chip - start) @ direction, 30.0, atol=1e-6)
    assert (end - start) @ direction > 0
    action = expert.act()
    assert env.action_space.contains(action)


@pytest.mark.parametrize("n", [29, 151, 100.5])
def test_bad_chip_count_raises(n):
    with pytest.raises(EnvInputError, match="n_chips"):
        ChipsEnv(n_chips=n)


def test_bad_options_raise(env):
    with pytest.raises(EnvInputError, match="off the table"):
        env.reset(options={"goal_region": [20.0, 256.0, 200.0]})
    with pytest.raises(EnvInputError, match="too small"):
        env.reset(options={"goal_region": [256.0, 256.0, 50.0]})
    with pytest.raises(EnvInputError, match="state"):
        env.reset(options={"init_state": np.zeros(env.state_dim - 1)})
    bad = env.get_state().copy()
    bad[-3:] = [0.6, 0.6, 0.2]  # a square off the table (metres)
    with pytest.raises(EnvInputError, match="off the table"):
        env.set_state(bad)


def test_goal_region_option_and_goal_square_carried_into_init(env):
    env.reset(seed=3, options={"goal_region": [300.0, 200.0, 180.0]})
    np.testing.assert_allclose(env.goal_region_mm, [300.0, 200.0, 180.0])
    goal = env.goal_state
    other = env.get_state()
    env.reset(seed=4)
    env.reset(options={"init_state": env.get_state(), "goal_state": goal})
    np.testing.assert_allclose(env.region_of(env.get_state()), [300.0, 200.0, 180.0])
    assert other.shape == goal.shape
