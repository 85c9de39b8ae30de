"""Chip-sweeping env: task metrics on hand-built states, push physics, rest, off-table, bad input."""

import copy

import mujoco
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


def _pile(centre=(256.0, 256.0), rows=5, cols=6, gap=0.5):
    """30 chips hex-packed into a tight pile (0.5 mm apart): the case where free chips stacked."""
    d = 15.0 + gap  # chip diameter + gap
    xy = [(c * d + (r % 2) * d / 2, r * d * np.sqrt(3) / 2) for r in range(rows) for c in range(cols)]
    xy = np.array(xy)
    return xy - xy.mean(axis=0) + centre


def _chip_bodies_mm(env, data):
    """Simulated chip body centres (mm), read from the physics rather than the state layout."""
    mujoco.mj_kinematics(env.model, data)
    return data.xpos[[env.model.body(f"chip{i}").id for i in range(env.n_chips)]] * 1e3


def _drift_mm(env, seconds=0.5):
    """How far any chip moves in `seconds` more of simulation, on a copy of the physics."""
    data = copy.copy(env.data)
    before = _chip_bodies_mm(env, data)
    mujoco.mj_step(env.model, data, nstep=round(seconds / env.cfg.timestep))
    return np.linalg.norm(_chip_bodies_mm(env, data) - before, axis=1).max()


@pytest.mark.parametrize("push", [((256.0, 190.0), (256.0, 330.0)), ((190.0, 200.0), (320.0, 300.0))])
def test_pushing_a_tight_pile_never_stacks_and_chips_come_to_rest(env, push):
    env.reset(seed=0)
    env.set_state(env._state_from(_pile(), np.array([100.0, 100.0]), env.goal_region_mm))
    before = env.chip_positions_mm()
    _, _, _, _, info = env.step(env.points_to_action(*push))
    z = _chip_bodies_mm(env, env.data)[:, 2]
    np.testing.assert_allclose(z, env.cfg.chip_half_height_mm, atol=1e-6)  # flat on the table, none on another
    assert not info["stacked"] and info["max_chip_z_mm"] == pytest.approx(env.cfg.chip_half_height_mm)
    assert info["max_chip_speed_mm_s"] < env.cfg.rest_speed_mm_s
    assert _drift_mm(env) < 0.1
    moved = np.linalg.norm(env.chip_positions_mm() - before, axis=1)
    length = np.linalg.norm(np.subtract(*push))
    assert moved.max() > 50.0 and moved.max() < length + 30.0  # pushed along, none flung away
    assert info["n_off_table"] == 0


def test_seeded_expert_and_random_pushes_end_at_rest_without_stacking(env):
    for seed, random_frac in [(0, 0.0), (1, 1.0)]:
        env.reset(seed=seed)
        expert = ChipsExpert(env, noise=10.0, random_frac=random_frac, seed=seed)
        for _ in range(3):
            _, _, _, _, info = env.step(expert.act())
            on_table = ~env.off_table_mask(env.chip_positions_mm())
            z = _chip_bodies_mm(env, env.data)[on_table, 2]
            assert np.all(z < env.cfg.chip_half_height_mm + env.cfg.stack_dz_mm) and not info["stacked"]
            assert info["max_chip_speed_mm_s"] < env.cfg.rest_speed_mm_s
            assert _drift_mm(env) < 0.1


def test_board_lowered_onto_a_chip_pushes_it_aside(env):
    env.reset(seed=0)
    xy = _row()
    xy[0] = (256.0, 256.0)
    env.set_state(env._state_from(xy, np.array([100.0, 100.0]), env.goal_region_mm))
    env.step(env.points_to_action([256.0, 256.0], [256.0, 300.0]))  # starts right on top of chip 0
    chip = env.chip_positions_mm()[0]
    # Out from under the board (its centre at y = 300, 5 mm half-thickness, 50 mm half-width).
    assert abs(chip[0] - 256.0) > 50.0 or abs(chip[1] - 300.0) >= 5.0 + 7.5 - 0.5
    assert np.linalg.norm(chip[:2] - [256.0, 256.0]) < 65.0  # aside or carried along, not flung


def test_frame_after_a_push_is_the_frame_of_its_state(env):
    env.reset(seed=4)
    env.action_space.seed(4)
    obs, *_ = env.step(env.action_space.sample())
    np.testing.assert_array_equal(obs["pixels"], env.render_state(env.get_state()))


def test_state_names_follow_the_state_layout(env):
    names = env.state_names
    n = env.n_chips
    assert len(names) == env.state_dim
    assert names[:9] == ["board_x", "board_y", "board_z", "board_qw", "board_qx", "board_qy", "board_qz",
                         "chip0_x", "chip0_y"]
    assert names[7 + 2 * n - 1] == f"chip{n - 1}_y" and names[7 + 2 * n] == "d_board_vx"
    assert names[7 + 2 * n + 6 : 7 + 2 * n + 8] == ["d_chip0_x", "d_chip0_y"]
    env.reset(seed=0)
    state = env.get_state()
    np.testing.assert_allclose(state[names.index("chip3_y")] * 1e3, env.chip_positions_mm()[3, 1])


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
