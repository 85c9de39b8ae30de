"""Push-T specifics: success criteria on hand-built states, coverage, quasi-static physics."""

import numpy as np
import pytest

import envs
from envs.pusht import DP_GOAL_POSE, coverage


@pytest.fixture(scope="module")
def env():
    e = envs.make("pusht")
    e.reset(seed=0)
    yield e
    e.close()


def state(agent, block):
    return np.array([*agent, *block, 0, 0, 0, 0, 0], dtype=np.float64)


GOAL = state((256, 420), DP_GOAL_POSE)


def test_coverage_of_identical_pose_is_one_and_disjoint_is_zero():
    assert coverage(DP_GOAL_POSE, DP_GOAL_POSE) == pytest.approx(1.0)
    assert coverage(DP_GOAL_POSE + [200, 0, 0], DP_GOAL_POSE) == 0.0
    half = coverage(DP_GOAL_POSE + [0, 0, np.pi], DP_GOAL_POSE)  # T flipped: only the stem overlaps partly
    assert 0.05 < half < 0.6


def test_coverage_matches_geometry_for_a_shift():
    # The stem is 30 mm wide along the local x axis; shifting the unrotated T by 15 mm along x
    # keeps the stem half covered and the bar 105/120 covered: (0.5*2700 + 105/120*3600)/6300.
    expected = (0.5 * 2700 + 105 / 120 * 3600) / 6300
    assert coverage(np.array([256.0, 256, 0]) + [15, 0, 0], np.array([256.0, 256, 0])) == pytest.approx(expected, abs=0.02)


@pytest.mark.parametrize(
    "cur, success, block_ok",
    [
        (state((256, 420), DP_GOAL_POSE), True, True),
        (state((256, 430), DP_GOAL_POSE + [10, 0, 0]), True, True),  # ||(0, 10, 10, 0)|| = 14 mm < 20
        (state((256, 420), DP_GOAL_POSE + [0, 0, np.deg2rad(19)]), True, True),
        (state((256, 420), DP_GOAL_POSE + [0, 0, np.deg2rad(21)]), False, False),  # pi/9 = 20 deg
        (state((256, 420), DP_GOAL_POSE + [25, 0, 0]), False, False),
        (state((300, 420), DP_GOAL_POSE), False, True),  # agent 44 mm off: DINO-WM fails, block-only passes
        (state((256, 420), DP_GOAL_POSE + [0, 0, 2 * np.pi]), True, True),  # angles wrap
    ],
)
def test_success_criteria(env, cur, success, block_ok):
    m = env.task_metrics(cur, GOAL)
    assert m["success"] == success
    assert m["success_block"] == block_ok


def test_angle_threshold_is_pi_over_9(env):
    just_in = state((256, 420), DP_GOAL_POSE + [0, 0, np.pi / 9 - 1e-3])
    just_out = state((256, 420), DP_GOAL_POSE + [0, 0, np.pi / 9 + 1e-3])
    assert env.task_metrics(just_in, GOAL)["success"]
    assert not env.task_metrics(just_out, GOAL)["success"]


def test_relative_action_moves_pusher_toward_target(env):
    env.reset(seed=0, options={"init_state": state((100, 100), (400, 400, 0))})
    for _ in range(10):
        env.step(np.array([0.5, 0.0]))
    assert env.get_state()[0] > 200  # moved right, a few tens of mm per step
    assert abs(env.get_state()[1] - 100) < 1


def test_block_is_quasi_static(env):
    """Pushed block stops within a few steps once the pusher leaves (pymunk damping = 0)."""
    env.reset(seed=0, options={"init_state": state((150, 256), (256, 256, np.pi / 2))})
    for _ in range(8):
        env.step(np.array([1.0, 0.0]))
    moved = env.get_state()[2] - 256
    assert moved > 50
    for _ in range(5):
        env.step(np.array([-1.0, 0.0]))  # pull away
    before = env.get_state()[2:5].copy()
    for _ in range(3):
        env.step(np.array([0.0, 0.0]))
    np.testing.assert_allclose(env.get_state()[2:5], before, atol=0.5)


def test_frictionless_push_through_centre_does_not_rotate(env):
    # Pushing the stem end straight along the stem axis (through the centre of mass) translates.
    env.reset(seed=0, options={"init_state": state((256, 150), (256, 256, 0.0))})  # stem points to -y
    for _ in range(10):
        env.step(np.array([0.0, 0.6]))
    s = env.get_state()
    assert s[3] > 280 and abs(s[4]) < np.deg2rad(2) and abs(s[2] - 256) < 2


def test_info_reports_contact_and_task_quantities(env):
    env.reset(seed=0, options={"init_state": state((256, 150), (256, 256, 0.0))})
    _, _, terminated, truncated, info = env.step(np.array([0.0, 1.0]))
    for key in ("success", "success_block", "success_coverage", "coverage", "block_pos_error", "block_angle_error",
                "agent_pos", "block_pose", "contact", "state"):
        assert key in info
    assert not terminated and not truncated
    for _ in range(3):
        _, _, _, _, info = env.step(np.array([0.0, 1.0]))
    assert info["contact"]


def test_state_outside_workspace_is_refused(env):
    with pytest.raises(envs.EnvInputError, match="outside the workspace"):
        env.set_state(state((600, 100), (256, 256, 0)))
