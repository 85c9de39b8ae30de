"""The receding-horizon loop and MPCAgent on a point mass whose world model is exact."""

import numpy as np
import pytest
import torch

from agents import MPCAgent, RandomPolicy
from wmplan.costs import CostSum, GoalEnergy, KeepOut
from wmplan.mpc import MPCConfig, MPCController
from wmplan.planners import PLANNERS, make_planner

torch.set_num_threads(1)
DT = 0.1
FAST = {"cem": dict(num_samples=64, num_elites=8, iterations=6), "icem": dict(num_samples=64, num_elites=8, iterations=6),
        "mppi": dict(num_samples=64, iterations=6), "gd": dict(num_starts=4, iterations=20),
        "cem-gd": dict(cem=dict(num_samples=64, num_elites=8, iterations=4), gd=dict(iterations=10))}


class PointMassModel(torch.nn.Module):
    """Exact world model of `step`: the latent is the position (one token, D=2); frameskip 2, history 2."""

    frameskip, action_dim, history, device = 2, 2, 2, torch.device("cpu")

    def __init__(self):
        super().__init__()
        self.dt = torch.nn.Parameter(torch.tensor(DT))  # a parameter, to check planning leaves its grad alone
        self.calls = []

    def flops_per_step(self):
        return 8.0

    def encode(self, pixels, proprio=None):  # [B, H, W, 3] uint8, [B, 2] -> [B, 1, 2]
        assert pixels.dtype == torch.uint8 and pixels.ndim == 4
        return proprio[:, None, :].clone()

    def rollout(self, z_hist, actions, a_past=None):  # [B, T, 1, 2], [B, H, 4] -> [B, H, 1, 2]
        self.calls.append((z_hist.shape, None if a_past is None else a_past.clone()))
        B, H, _ = actions.shape
        per_step = actions.reshape(B, H, self.frameskip, self.action_dim).sum(2)  # [B, H, 2]
        return z_hist[:, -1:] + self.dt * torch.cumsum(per_step, dim=1)[:, :, None, :]


def obs_of(pos):
    pos = np.atleast_2d(pos).astype(np.float32)
    return {"pixels": np.zeros((pos.shape[0], 8, 8, 3), np.uint8), "proprio": pos}


def run(agent, start, goal, steps):
    pos, path = np.array(start, dtype=np.float64), []
    goal_obs = obs_of(goal)
    for _ in range(steps):
        action = agent.act(obs_of(pos), goal_obs)
        assert action.shape == pos.shape and np.all(np.abs(action) <= 1 + 1e-6)
        pos = pos + DT * action
        path.append(pos.copy())
    return np.array(path)  # [T, B, 2]


def make_agent(planner="cem", config=MPCConfig(horizon=4), costs=None, **kw):
    # energy over all steps: with the last step only, any path arriving at the horizon's end is optimal
    # and the receding horizon keeps postponing arrival
    costs = costs or [GoalEnergy(steps="all")]
    model = PointMassModel()
    agent = MPCAgent(model, make_planner(planner, **FAST.get(planner, {})), costs, config,
                     action_low=[-1, -1], action_high=[1, 1], readout=lambda z: z[..., 0, :], **kw)
    return agent, model


@pytest.mark.parametrize("name", list(PLANNERS))
def test_every_planner_reaches_the_goal_in_closed_loop(name):
    agent, model = make_agent(name)
    path = run(agent, [[0.0, 0.0]], [[0.5, -0.4]], steps=16)
    assert np.linalg.norm(path[-1, 0] - [0.5, -0.4]) < 0.05
    assert model.dt.grad is None, "planning must not accumulate gradients in the world model"


def test_history_frames_and_past_actions_reach_the_world_model():
    agent, model = make_agent(config=MPCConfig(horizon=3, execute_steps=1))
    run(agent, [[0.0, 0.0]], [[0.3, 0.3]], steps=4)  # 2 planned steps of frameskip 2 -> 2 re-plans
    first, second = [c for c in model.calls if c[0][0] == 1][0], [c for c in model.calls if c[0][0] == 1][-1]
    assert first[0] == (1, 2, 1, 2) and torch.equal(first[1], torch.zeros(1, 1, 4)), "repeat-padded history"
    executed = agent.controller._steps[-2]  # the planned step executed between the two history frames
    assert second[0] == (1, 2, 1, 2) and torch.allclose(second[1][0, 0], executed[0])
    assert len(agent.records) == 2 and agent.records[1].env_step == 2


def test_execute_several_steps_and_records():
    agent, _ = make_agent(config=MPCConfig(horizon=4, execute_steps=2))
    path = run(agent, [[0.0, 0.0]], [[-0.4, 0.2]], steps=16)
    assert np.linalg.norm(path[-1, 0] - [-0.4, 0.2]) < 0.05
    rec = agent.records[0]
    assert len(agent.records) == 4 and [r.env_step for r in agent.records] == [0, 4, 8, 12]
    assert rec.positions.shape == (1, 4, 2) and set(rec.terms) == {"goal"}
    np.testing.assert_allclose(rec.positions[0, 0], path[1, 0], atol=1e-5)  # exact model: prediction = reality
    assert rec.predictor_calls == 6 * 64 * 4 and rec.wall_time > 0 and rec.history.shape == (6, 1)
    assert rec.flops == 8.0 * rec.predictor_calls
    np.testing.assert_allclose(rec.cost, rec.terms["goal"], rtol=1e-6)


def test_budget_shrinks_the_horizon_so_plans_end_with_the_episode():
    # frameskip 2, budget 12 env steps: re-plans at env steps 0, 2, ..., 10 plan min(4, steps left)
    agent, _ = make_agent(config=MPCConfig(horizon=4, budget=12), costs=[GoalEnergy(steps="last")])
    path = run(agent, [[0.0, 0.0]], [[0.3, -0.2]], steps=12)
    assert [r.positions.shape[1] for r in agent.records] == [4, 4, 4, 3, 2, 1]
    assert [r.env_step for r in agent.records] == [0, 2, 4, 6, 8, 10]
    # a last-step energy now scores the state the episode ends in
    assert np.linalg.norm(path[-1, 0] - [0.3, -0.2]) < 0.02
    run(agent, [[0.0, 0.0]], [[0.3, -0.2]], steps=16)  # past the budget: keeps planning one step ahead
    assert [r.positions.shape[1] for r in agent.records][-2:] == [1, 1]
    with pytest.raises(ValueError, match="budget"):
        MPCConfig(budget=0)


def test_budget_horizon_with_several_executed_steps_and_a_new_episode():
    # frameskip 2, k = 3 planned steps executed per re-plan: re-plans at env steps 0 and 6 plan 4, then 3
    agent, _ = make_agent(config=MPCConfig(horizon=4, execute_steps=3, budget=12), costs=[GoalEnergy(steps="last")])
    path = run(agent, [[0.0, 0.0]], [[0.3, -0.2]], steps=12)
    assert [(r.env_step, r.positions.shape[1]) for r in agent.records] == [(0, 4), (6, 3)]
    assert np.linalg.norm(path[-1, 0] - [0.3, -0.2]) < 0.02
    agent.reset()  # a new episode plans the full horizon again, from no warm start of the shrunk plan
    run(agent, [[0.0, 0.0]], [[-0.3, 0.2]], steps=2)
    assert (agent.records[-1].env_step, agent.records[-1].positions.shape[1]) == (0, 4)


def test_costs_learn_whether_the_plan_ends_the_episode():
    # frameskip 2, horizon 4, budget 12: the plans made at env steps 0 and 2 end before the episode does
    # (at 8 and 10 < 12); from env step 4 on each plan's last state is the episode's last
    seen = []

    class Spy(GoalEnergy):
        def amount(self, ctx):
            seen.append((len(agent.controller.records), ctx.at_end))  # (the re-plan it scores for, at_end)
            return super().amount(ctx)

    agent, _ = make_agent(config=MPCConfig(horizon=4, budget=12), costs=[Spy(steps="last", early_weight=0.25)])
    run(agent, [[0.0, 0.0]], [[0.3, -0.2]], steps=12)
    assert [r.env_step for r in agent.records] == [0, 2, 4, 6, 8, 10]
    per_replan = [{at_end for i, at_end in seen if i == k} for k in range(6)]
    assert per_replan == [{False}, {False}, {True}, {True}, {True}, {True}]
    agent, _ = make_agent(config=MPCConfig(horizon=4), costs=[Spy(steps="last", early_weight=0.25)])
    seen.clear()
    run(agent, [[0.0, 0.0]], [[0.3, -0.2]], steps=4)
    assert {at_end for _, at_end in seen} == {None}, "without a budget no plan knows where the episode ends"


def test_keep_out_guardrail_holds_in_the_real_loop():
    # predictions exist every frameskip env steps only: a margin covers the env steps in between
    costs = [GoalEnergy(steps="all"), KeepOut(centers=[[0.0, 0.0]], radii=0.15, margin=0.05, mode="constraint")]
    config = MPCConfig(horizon=5)
    agent = MPCAgent(PointMassModel(), make_planner("cem", num_samples=200, num_elites=20, iterations=10), costs,
                     config, action_low=[-1, -1], action_high=[1, 1], readout=lambda z: z[..., 0, :])
    path = run(agent, [[-0.4, 0.01]], [[0.4, 0.0]], steps=24)
    assert np.linalg.norm(path[1::2, 0], axis=-1).min() >= 0.2 - 1e-4  # predicted = real at boundaries
    assert np.linalg.norm(path[:, 0], axis=-1).min() >= 0.15
    assert np.linalg.norm(path[-1, 0] - [0.4, 0.0]) < 0.1
    assert all(r.violation[0] == 0 for r in agent.records)


def test_batched_envs_equal_separate_runs():
    starts, goals = [[0.0, 0.0], [0.2, -0.2]], [[0.4, 0.1], [-0.3, 0.2]]
    batched, _ = make_agent(config=MPCConfig(horizon=4, seed=3))
    path = run(batched, starts, goals, steps=6)
    for b in range(2):
        alone, _ = make_agent(config=MPCConfig(horizon=4, seed=3 + b))
        np.testing.assert_allclose(run(alone, starts[b : b + 1], goals[b : b + 1], 6)[:, 0], path[:, b], atol=1e-5)
    again, _ = make_agent(config=MPCConfig(horizon=4, seed=3))
    np.testing.assert_array_equal(run(again, starts, goals, 6), path)
    batched.reset()
    np.testing.assert_array_equal(run(batched, starts, goals, 6), path)  # reset re-seeds


def test_single_observation_and_bare_pixels():
    agent, _ = make_agent()
    obs, goal = obs_of([0.0, 0.0]), obs_of([0.2, 0.2])
    action = agent.act({k: v[0] for k, v in obs.items()}, {k: v[0] for k, v in goal.items()})
    assert action.shape == (2,) and action.dtype == np.float32
    with pytest.raises(ValueError, match="pixels"):
        agent.act({"proprio": obs["proprio"]}, goal)


def test_bad_inputs_raise_value_errors():
    agent, _ = make_agent()
    nan_goal = obs_of([np.nan, 0.0])
    with pytest.raises(ValueError, match="NaN"):
        agent.act(obs_of([0.0, 0.0]), nan_goal)
    with pytest.raises(ValueError, match="uint8"):
        agent.act({"pixels": np.zeros((1, 8, 8, 3), np.float32), "proprio": np.zeros((1, 2))}, obs_of([0, 0]))
    with pytest.raises(ValueError, match="differ in shape"):
        agent.act(obs_of([[0, 0], [0, 0]]), obs_of([0, 0]))
    with pytest.raises(ValueError, match="action bounds"):
        MPCAgent(PointMassModel(), "cem", None, action_low=[-1, -1, -1], action_high=[1, 1, 1])
    with pytest.raises(ValueError, match="action_space"):
        MPCAgent(PointMassModel(), "cem")
    with pytest.raises(ValueError, match="execute_steps"):
        MPCConfig(horizon=3, execute_steps=4)
    controller = MPCController(PointMassModel(), make_planner("cem"), CostSum([GoalEnergy()]), [-1, -1], [1, 1])
    with pytest.raises(ValueError, match="set_goal"):
        controller.act(obs_of([0, 0])["pixels"], obs_of([0, 0])["proprio"])


def test_random_policy_is_seeded_bounded_and_holds_actions():
    import gymnasium as gym

    space = gym.spaces.Box(-0.5, 2.0, (3,), np.float32)
    a = RandomPolicy(space, seed=1, repeat=2)
    acts = np.array([a.act() for _ in range(6)])
    assert np.all(acts >= -0.5) and np.all(acts <= 2.0)
    assert np.array_equal(acts[0], acts[1]) and not np.array_equal(acts[1], acts[2])
    a.reset()
    assert np.array_equal(a.act(), acts[0])


@pytest.mark.parametrize("name", ["cem", "gd"])
def test_runs_with_the_real_world_model_and_probe_guardrail(name):
    """Against a tiny random `WorldModel` (ViT encoder + predictor + probe): shapes, bounds, no grads."""
    pytest.importorskip("wmplan.world_model")
    from wmplan.costs import probe_readout
    from wmplan.encoders import ViTConfig, ViTEncoder
    from wmplan.predictor import Predictor, PredictorConfig
    from wmplan.probe import Probe
    from wmplan.world_model import WorldModel

    enc = ViTEncoder(ViTConfig(image_size=32, patch_size=8, embed_dim=16, depth=1, num_heads=2, pool_grid=2), seed=0)
    pred = Predictor(PredictorConfig(history=2, frameskip=2, width=16, depth=1, num_heads=2), num_tokens=4,
                     latent_dim=19, action_dim=2, proprio_dim=3, seed=0)
    wm = WorldModel(enc, pred, "pusht", 32, 2, np.zeros(3), np.ones(3), probe=Probe(4, 19, ["agent_x", "agent_y"])).eval()
    costs = [GoalEnergy(), KeepOut(centers=[[0.0, 0.0]], radii=0.1, mode="constraint")]
    planner = make_planner(name, **({"num_starts": 2, "iterations": 3} if name == "gd" else FAST["cem"]))
    agent = MPCAgent(wm, planner, costs, MPCConfig(horizon=3), action_low=[-0.5, -0.5], action_high=[0.5, 0.5],
                     readout=probe_readout(wm.probe))
    rng = np.random.default_rng(0)
    obs = lambda: {"pixels": rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8), "proprio": rng.normal(size=(2, 3))}
    goal = obs()
    for _ in range(5):
        action = agent.act(obs(), goal)
        assert action.shape == (2, 2) and np.all(np.abs(action) <= 0.5 + 1e-6)
    assert len(agent.records) == 3 and agent.records[0].positions.shape == (2, 3, 2)
    assert all(p.grad is None for p in wm.parameters())


class ProprioPointMass(PointMassModel):
    """The point mass as a model that declares its proprio, as every trained `WorldModel` does."""

    proprio_dim = 2


class DotlessModel(PointMassModel):
    """A model that reads pixels only (no proprio): bare pixel arrays are enough."""

    proprio_dim = 0

    def encode(self, pixels, proprio=None):
        return pixels.float().mean((1, 2))[:, None, :2]


def test_a_missing_goal_asks_for_the_goal_observation():
    agent = MPCAgent(ProprioPointMass(), "cem", None, action_low=[-1, -1], action_high=[1, 1])
    obs = obs_of([0.0, 0.0])
    with pytest.raises(ValueError, match=r"the goal is None: act\(\) needs a goal observation, a dict with pixels .*"
                                         r"and proprio \(\[2\].*world_model.proprio_dim"):
        agent.act(obs, None)
    with pytest.raises(ValueError, match=r"the goal has no proprio, but this world model uses proprio "
                                         r"\(world_model.proprio_dim = 2\)"):
        agent.act(obs, {"pixels": obs["pixels"]})
    with pytest.raises(ValueError, match=r"the observation has no proprio"):
        agent.act(obs["pixels"], obs)
    pixels_only = MPCAgent(DotlessModel(), "cem", None, action_low=[-1, -1], action_high=[1, 1])
    with pytest.raises(ValueError, match=r"the goal is None: act\(\) needs a goal observation, pixels \(\[H, W, 3\]"):
        pixels_only.act(obs["pixels"], None)


def test_a_new_batch_size_needs_a_reset():
    agent, _ = make_agent()
    agent.act(obs_of([[0.0, 0.0]]), obs_of([[0.2, 0.2]]))  # B = 1, and a queued plan for one env
    with pytest.raises(ValueError, match=r"^batch size changed from 1 to 2; call agent.reset\(\) first$"):
        agent.act(obs_of([[0.0, 0.0], [0.1, 0.1]]), obs_of([[0.2, 0.2], [0.3, 0.3]]))
    agent.reset()
    assert agent.act(obs_of([[0.0, 0.0], [0.1, 0.1]]), obs_of([[0.2, 0.2], [0.3, 0.3]])).shape == (2, 2)


def test_position_guardrails_without_a_readout_say_to_pass_one():
    costs = [GoalEnergy(), KeepOut(centers=[[0.0, 0.0]], radii=0.1, mode="constraint")]
    with pytest.raises(ValueError, match=r"\['keep_out'\] read the agent position .*pass readout= to MPCAgent"):
        MPCAgent(PointMassModel(), "cem", costs, action_low=[-1, -1], action_high=[1, 1])
    own = [GoalEnergy(), KeepOut(centers=[[0.0, 0.0]], radii=0.1, readout=lambda z: z[..., 0, :])]
    MPCAgent(PointMassModel(), "cem", own, action_low=[-1, -1], action_high=[1, 1])  # the term brings its own


def test_wrong_frame_size_says_what_to_do():
    from conftest import tiny_world_model

    wm = tiny_world_model()
    n = wm.image_size
    frames = np.zeros((1, 2 * n, 2 * n, 3), np.uint8)
    with pytest.raises(ValueError, match=f"expects {n}x{n} frames, got .*: render the env at {n}x{n} "
                                         f"\\(e.g. make it with image_size={n}\\) or resize the frames"):
        wm.encode(frames, np.zeros((1, wm.proprio_dim), np.float32))
