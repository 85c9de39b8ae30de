"""Maze specifics: layouts, success criterion, walls, reset options, layout switching, the expert."""

import numpy as np
import pytest

import envs
from envs.base import EnvInputError
from envs.maze import MazeEnv, MazeExpert
from envs.maze_expert import straight_run_target
from envs.maze_layouts import STANDARD_LAYOUTS, layout_from_code, random_layout, standard_layout


@pytest.fixture(scope="module")
def env():
    e = envs.make("maze")
    e.reset(seed=0)
    yield e
    e.close()


@pytest.fixture(autouse=True)
def back_to_umaze(env):
    env.reset(seed=0, options={"layout": "umaze"})


@pytest.mark.parametrize("name, shape, n_free", [("umaze", (5, 5), 7), ("medium", (8, 8), 26), ("large", (9, 12), 46)])
def test_standard_layouts_have_d4rl_sizes(name, shape, n_free):
    layout = standard_layout(name)
    assert layout.shape == shape and len(layout.free_cells) == n_free
    assert layout_from_code(layout.code) == layout


def test_random_layouts_are_seeded_connected_and_distinct():
    a, b = random_layout(7), random_layout(7)
    assert a.rows == b.rows and a.shape == (9, 9)
    assert random_layout(8).rows != a.rows
    reachable = a.distances_to(a.free_cells[0])
    assert set(reachable) == set(a.free_cells)  # every free cell reachable
    assert layout_from_code(a.code).rows == a.rows


def test_cell_geometry_round_trips():
    layout = standard_layout("large")
    for cell in layout.free_cells:
        center = layout.cell_center(cell)
        assert layout.cell_of(center) == cell and layout.cell_of(center + [0.49, -0.49]) == cell
    assert np.allclose(layout.cell_center((1, 1)), [1, 7])  # row 0 is the top (+y) row


@pytest.mark.parametrize(
    "offset, success, success_05",
    [((0.0, 0.0), True, True), ((0.3, 0.3), True, True), ((0.0, 0.44), True, True),
     ((0.0, -0.46), False, True), ((0.0, 0.5), False, False)],
)
def test_success_criterion_on_hand_built_states(env, offset, success, success_05):
    goal = env.state_at([3.0, 2.0])  # U-maze: the right-hand corridor, free for y in [0.5, 3.5]
    env.reset(options={"init_state": env.state_at(np.add([3.0, 2.0], offset), [2.0, 0.0]), "goal_state": goal})
    info = env._task_info()
    assert info["success"] is success and info["success_05"] is success_05
    assert info["distance"] == pytest.approx(np.hypot(*offset))
    assert env.is_success(env.get_state(), goal) == success
    np.testing.assert_allclose(info["agent_vel"], [2.0, 0.0])


def test_walls_block_the_agent_and_report_contact(env):
    # U-maze: the agent at (1, 1) pushes up (+y) into the wall row that spans y in [1.5, 2.5].
    env.reset(options={"start_pos": [1.0, 1.0], "goal_pos": [3.0, 3.0]})
    infos = [env.step(np.array([0.0, 1.0]))[-1] for _ in range(40)]
    assert max(i["agent_pos"][1] for i in infos) < 1.5 - 0.1 + 0.01
    assert infos[-1]["wall_contact"] and infos[-1]["wall_contact_count"] == env.config.frame_skip
    assert not infos[0]["wall_contact"]


def test_velocity_is_clipped(env):
    env.reset(options={"init_state": env.state_at([1.0, 1.0], [9.0, 0.0]), "goal_state": env.state_at([3.0, 3.0])})
    _, _, _, _, info = env.step(np.zeros(2))
    assert info["agent_vel"][0] <= 5.0


@pytest.mark.parametrize(
    "options, match",
    [({"layout": "spiral"}, "unknown maze layout"),
     ({"layout": "random", "layout_seed": -1}, "layout_seed"),
     ({"goal_cell": (2, 1)}, "wall cell"),
     ({"start_cell": (7, 1)}, "outside"),
     ({"goal_cell": (1.5, 1)}, "integer"),
     ({"goal_pos": [1.0, 2.0]}, "inside a wall"),
     ({"start_pos": [0.55, 1.0]}, "inside a wall"),  # centre free, but the sphere overlaps the wall
     ({"goal_pos": [np.nan, 1.0]}, "finite"),
     ({"init_state": [1.0, 2.0, 0.0, 0.0, 0.0]}, "inside a wall"),
     ({"layout": "medium", "init_state": [1.0, 1.0, 0.0, 0.0, 0.0]}, "layout code"),
     ({"layout": "umaze", "layout_seed": 3}, "only applies"),
     ({"goal_cell": (1, 1), "goal_pos": [1.0, 3.0]}, "conflict")],
)
def test_bad_options_raise(env, options, match):
    with pytest.raises(EnvInputError, match=match):
        env.reset(seed=0, options=options)


def test_set_state_of_another_layout_raises(env):
    medium_state = MazeEnv(layout="medium").state_at([1.0, 1.0])
    with pytest.raises(EnvInputError, match="layout"):
        env.set_state(medium_state)


def test_unknown_layout_in_constructor_raises():
    with pytest.raises(EnvInputError, match="unknown maze layout"):
        MazeEnv(layout="spiral")


def test_sampled_start_and_goal_are_free_jittered_and_apart(env):
    for seed in range(20):
        env.reset(seed=seed)
        start, goal = env.get_state(), env.goal_state
        assert np.linalg.norm(start[:2] - goal[:2]) >= 0.5
        for s in (start, goal):
            cell = env.layout.cell_of(s[:2])
            assert env.layout.is_free(cell)
            assert np.all(np.abs(s[:2] - env.layout.cell_center(cell)) <= 0.25)


def test_cell_and_position_options(env):
    env.reset(seed=0, options={"start_cell": (3, 1), "goal_pos": [1.0, 3.0]})
    assert env.layout.cell_of(env.get_state()[:2]) == (3, 1)
    np.testing.assert_array_equal(env.goal_state[:2], [1.0, 3.0])


@pytest.mark.parametrize("name", STANDARD_LAYOUTS)
def test_reset_switches_layout_and_rebuilds(env, name):
    obs, _ = env.reset(seed=1, options={"layout": name})
    assert env.layout.name == name and env.get_state()[4] == standard_layout(name).code
    assert obs["pixels"].shape == (64, 64, 3)
    env.step(np.zeros(2))  # the rebuilt model steps


def test_random_layout_reset_and_restore_from_state(env):
    env.reset(seed=0, options={"layout": "random", "layout_seed": 11})
    state, goal, frame = env.get_state(), env.goal_state, env.render()
    assert env.layout.seed == 11 and state[4] == -12
    env.reset(seed=0, options={"layout": "large"})
    env.reset(options={"init_state": state, "goal_state": goal})  # the state's code selects the layout
    assert env.layout.rows == random_layout(11).rows
    np.testing.assert_array_equal(env.get_state(), state)
    np.testing.assert_array_equal(env.render(), frame)


def test_layouts_render_differently(env):
    frames = [env.reset(seed=0, options={"layout": n})[0]["pixels"] for n in ("umaze", "medium", "large")]
    assert not np.array_equal(frames[0], frames[1]) and not np.array_equal(frames[1], frames[2])


def test_straight_run_target_looks_down_the_corridor():
    layout = standard_layout("umaze")
    path = [(1, 1), (1, 2), (1, 3), (2, 3), (3, 3)]
    np.testing.assert_allclose(straight_run_target(layout, path, np.array([3.0, 1.0])), layout.cell_center((1, 3)))
    np.testing.assert_allclose(straight_run_target(layout, path[2:], np.array([3.1, 1.0])), [3.1, 1.0])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clean_expert_reaches_the_goal_on_umaze(env, seed):
    env.reset(seed=seed, options={"start_cell": (3, 1), "goal_cell": (1, 1)})  # the far end of the U
    expert = MazeExpert(env, noise=0.0)
    for _ in range(100):
        _, _, _, _, info = env.step(expert.act())
    assert info["success"]


def test_noisy_expert_mixes_random_segments(env):
    expert = MazeExpert(env, noise=0.3, segment_steps=5, seed=0)
    assert expert.random_frac == 0.5 and MazeExpert(env, noise=0.0).random_frac == 0.0
    modes = []
    for _ in range(100):
        action = expert.act()
        assert action.shape == (2,) and np.all(np.abs(action) <= 1)
        modes.append(expert._random_segment)
    assert 0 < np.mean(modes) < 1


def test_direct_segments_drive_into_the_inner_wall(env):
    # Start on the top arm, goal below it across the U's inner wall: aiming straight at the goal
    # the agent ends pressed against the wall, the contact a wall-blind planner never sees in data.
    env.reset(seed=0, options={"start_pos": (1.0, 3.0), "goal_pos": (1.0, 1.0)})
    expert = MazeExpert(env, noise=0.0, random_frac=0.0, direct_frac=1.0, segment_steps=10)
    for _ in range(40):
        _, _, _, _, info = env.step(expert.act())
        assert expert._direct_segment and not expert._random_segment
    assert info["wall_contact"] and info["agent_pos"][1] > 2.5
    with pytest.raises(ValueError):
        MazeExpert(env, random_frac=0.6, direct_frac=0.5)


def test_resampling_mode_draws_seeded_training_layouts():
    env = MazeEnv(layout="random", layout_seed=None)
    seeds = []
    for s in (0, 1, 2, 0):
        env.reset(seed=s)
        seeds.append(env.layout.seed)
        assert env.config.train_layout_seeds[0] <= env.layout.seed < env.config.train_layout_seeds[1]
    assert seeds[0] == seeds[3] and len(set(seeds)) == 3
    assert env.state_names == ["agent_x", "agent_y", "d_agent_x", "d_agent_y", "extra_layout_code"]
    env.close()
