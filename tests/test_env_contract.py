"""Contract every registered env must honour (gymnasium API, determinism, exact state, goals)."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs.base import EnvInputError

NAMES = sorted(envs.ENVS)
STEPS = 3  # chips steps are whole pushes, so keep the rollouts short


@pytest.fixture(params=NAMES)
def env(request):
    e = envs.make(request.param)
    yield e
    e.close()


def _rollout(env, seed, n=STEPS):
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    frames, states = [obs["pixels"]], [env.get_state()]
    for _ in range(n):
        obs, *_ = env.step(env.action_space.sample())
        frames.append(obs["pixels"])
        states.append(env.get_state())
    return np.stack(frames), np.stack(states)


def test_gymnasium_check_env(env):
    check_env(env, skip_render_check=True)


@pytest.mark.parametrize("name", NAMES)
def test_registered_with_gymnasium(name):
    wrapped = gym.make(envs.ENVS[name].gym_id)
    assert wrapped.spec.max_episode_steps == envs.ENVS[name].max_episode_steps
    wrapped.close()


def test_observation_layout(env):
    obs, info = env.reset(seed=0)
    assert obs["pixels"].shape == (env.image_size, env.image_size, 3) and obs["pixels"].dtype == np.uint8
    assert obs["proprio"].shape == (env.proprio_dim,) and obs["proprio"].dtype == np.float32
    assert isinstance(info["success"], (bool, np.bool_))
    assert obs["pixels"].std() > 0  # something is drawn


def test_same_seed_same_trajectory(env):
    f1, s1 = _rollout(env, seed=3)
    f2, s2 = _rollout(env, seed=3)
    np.testing.assert_array_equal(s1, s2)
    np.testing.assert_array_equal(f1, f2)
    _, s3 = _rollout(env, seed=4)
    assert not np.array_equal(s1[0], s3[0])


def test_state_round_trip_is_exact(env):
    _, states = _rollout(env, seed=1)
    for s in states:
        env.set_state(s)
        np.testing.assert_array_equal(env.get_state(), s)


def test_set_state_then_step_reproduces_trajectory(env):
    env.reset(seed=5)
    start = env.get_state()
    env.action_space.seed(0)
    actions = [env.action_space.sample() for _ in range(STEPS)]
    first = [env.step(a)[0]["pixels"] for a in actions]
    end = env.get_state()
    env.set_state(start)
    second = [env.step(a)[0]["pixels"] for a in actions]
    np.testing.assert_array_equal(env.get_state(), end)
    np.testing.assert_array_equal(np.stack(first), np.stack(second))


def test_render_state_equals_render_after_set_state(env):
    _, states = _rollout(env, seed=2)
    current = env.get_state()
    rendered = env.render_state(states[1])
    np.testing.assert_array_equal(env.get_state(), current)  # render_state leaves the env alone
    env.set_state(states[1])
    np.testing.assert_array_equal(env.render(), rendered)


def test_step_observation_shows_the_state_it_reports(env):
    """The frame and proprio a step returns are those of its final state, not one physics step
    behind it (mj_step leaves position-derived quantities at the start of its last step)."""
    env.reset(seed=8)
    env.action_space.seed(8)
    for _ in range(STEPS):
        obs, _, _, _, info = env.step(env.action_space.sample())
        expected = env.observation_of_state(info["state"])
        np.testing.assert_array_equal(obs["pixels"], expected["pixels"])
        np.testing.assert_array_equal(obs["proprio"], expected["proprio"])


def test_reset_options_are_honoured(env):
    _, states = _rollout(env, seed=6)
    obs, info = env.reset(seed=99, options={"init_state": states[2], "goal_state": states[-1]})
    np.testing.assert_array_equal(env.get_state(), states[2])
    np.testing.assert_array_equal(env.goal_state, states[-1])
    np.testing.assert_array_equal(env.goal_observation()["pixels"], env.render_state(states[-1]))


def test_goal_state_is_success(env):
    env.reset(seed=7)
    env.set_state(env.goal_state)
    assert env._task_info()["success"]


@pytest.mark.parametrize(
    "bad", [lambda s: np.zeros(s.shape[0] + 1), lambda s: np.full(s.shape, np.nan), lambda s: np.zeros((2, s.shape[0]))]
)
def test_bad_state_raises(env, bad):
    env.reset(seed=0)
    with pytest.raises(EnvInputError, match="state"):
        env.set_state(bad(env.get_state()))
    with pytest.raises(EnvInputError, match="state"):
        env.reset(options={"init_state": bad(env.get_state())})


def test_bad_actions_raise(env):
    env.reset(seed=0)
    shape = env.action_space.shape
    with pytest.raises(EnvInputError, match="shape"):
        env.step(np.zeros(shape[0] + 1))
    with pytest.raises(EnvInputError, match="NaN"):
        env.step(np.full(shape, np.nan))
    with pytest.raises(EnvInputError, match="outside"):
        env.step(env.action_space.high + 1.0)
    with pytest.raises(EnvInputError, match="unknown reset option"):
        env.reset(options={"no_such_option": 1})


def test_unknown_env_name_raises():
    with pytest.raises(EnvInputError, match="unknown environment 'nope'.*pusht"):
        envs.make("nope")


@pytest.mark.parametrize("size", [32, 96])
def test_image_size_is_configurable(size):
    env = envs.make("pusht", image_size=size)
    obs, _ = env.reset(seed=0)
    assert obs["pixels"].shape == (size, size, 3)
    with pytest.raises(EnvInputError, match="image_size"):
        envs.make("pusht", image_size=3)
