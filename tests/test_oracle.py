"""The simulator oracle of experiments/oracle_planning.py: its rollouts are the simulator's, and the
script runs the benchmark's episodes end to end."""

import json

import numpy as np
import pytest
import torch

import envs
from experiments.oracle_planning import SimulatorModel, main
from conftest import tiny_world_model


@pytest.fixture
def pusht():
    env = envs.make("pusht")
    env.reset(seed=3)
    return env


def _candidates(rng, M=3, H=2, fs=5):
    return torch.as_tensor(rng.uniform(-1, 1, (M, H, fs * 2)), dtype=torch.float32)  # [M, H, fs*A]


def test_state_oracle_rolls_out_the_simulator_from_the_true_state(pusht, rng):
    model = SimulatorModel(tiny_world_model(), pusht, envs.make("pusht"), "state", radius=60.0)
    start = pusht.get_state()
    actions = _candidates(rng)
    z = model.rollout(None, actions)  # [M, H, 1, 6]
    assert z.shape == (3, 2, 1, 6)
    for m in range(3):
        states = pusht.simulate(start, actions[m].numpy().reshape(-1, 2))[4::5]  # the state after each planned step
        agent, block, theta = states[:, 0:2], states[:, 2:4], states[:, 4]
        lever = 60.0 * np.stack([np.sin(theta), np.cos(theta)], axis=1)
        np.testing.assert_allclose(z[m, :, 0].numpy(), np.concatenate([agent, block, lever], 1) / 100.0, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(pusht.get_state(), start)  # the episode's env is read, never stepped
    assert model.steps_simulated == 3 * 2 * 5


def test_state_energy_weighs_the_agent_against_the_block(pusht, rng):
    """Split in a block and an agent term, the state oracle's energy equals the single goal energy at
    weight 1, and at agent weight w the energy of features whose agent part is scaled by w."""
    from experiments.oracle_planning import state_energy
    from wmplan.costs import ActionBounds, CostContext, CostSum, GoalEnergy

    z, g = torch.randn(2, 5, 3, 1, 6), torch.randn(2, 1, 6)  # [B, N, H, P, D], [B, P, D]
    actions = torch.zeros(2, 5, 3, 10)
    energy = lambda terms, z, g, at_end=None: CostSum(terms)(CostContext(actions, z, g, at_end=at_end)).total
    single = [GoalEnergy(steps="all"), ActionBounds()]
    torch.testing.assert_close(energy(state_energy(steps="all"), z, g), energy(single, z, g))
    scale = torch.tensor([0.3, 0.3, 1, 1, 1, 1])
    torch.testing.assert_close(energy(state_energy(0.3, steps="all"), z, g), energy(single, z * scale, g * scale))
    staged = state_energy(0.3, 1.0, steps="all")  # 0.3 until the plan ends the episode, 1 in that plan
    torch.testing.assert_close(energy(staged, z, g, at_end=False), energy(single, z * scale, g * scale))
    torch.testing.assert_close(energy(staged, z, g, at_end=True), energy(single, z, g))
    with pytest.raises(ValueError, match="agent weights"):
        state_energy(-1.0)


def test_latent_oracle_encodes_the_simulated_frames(pusht, rng):
    wm = tiny_world_model()
    model = SimulatorModel(wm, pusht, envs.make("pusht"), "latent")
    actions = _candidates(rng, M=2)
    z = model.rollout(None, actions)
    assert z.shape == (2, 2, *wm.latent_shape)
    real = envs.make("pusht")  # what the episode's env would show after these actions
    real.reset(options={"init_state": pusht.get_state(), "goal_state": pusht.goal_state})
    for a in actions[1].numpy().reshape(-1, 2):
        obs, *_ = real.step(a)
    with torch.inference_mode():
        expected = wm.encode(torch.as_tensor(obs["pixels"][None]), torch.as_tensor(obs["proprio"][None]))[0]
    torch.testing.assert_close(z[1, -1], expected)


def test_state_oracle_reads_the_goal_state_for_the_goal_frame(pusht):
    model = SimulatorModel(tiny_world_model(), pusht, envs.make("pusht"), "state")
    goal = model.encode(pusht.goal_observation()["pixels"][None])
    now = model.encode(pusht._observation()["pixels"][None])
    np.testing.assert_allclose(goal[0, 0, 2:4].numpy(), pusht.goal_state[2:4] / 100.0, rtol=1e-6)
    np.testing.assert_allclose(now[0, 0, 2:4].numpy(), pusht.get_state()[2:4] / 100.0, rtol=1e-6)


def test_oracle_script_runs_benchmark_episodes_and_resumes(tmp_path, tiny_pusht_checkpoint):
    out = tmp_path / "oracle.json"
    args = ["--oracle", "state", "--episodes", "1", "--checkpoint", str(tiny_pusht_checkpoint), "--out", str(out),
            "--planner-settings", '{"num_samples": 8, "num_elites": 2, "iterations": 1}', "--quiet"]
    assert main(args) == 0
    result = json.loads(out.read_text())
    assert result["oracle_result"]["episodes"] == 1 and result["learned_model_same_seeds"] is None
    assert result["settings"]["num_samples"] == 8 and len(result["episodes"]) == 1
    log = (tmp_path / "oracle" / "episodes.jsonl").read_text().splitlines()
    assert main([*args[:3], "2", *args[4:]]) == 0  # one more episode; the first is read back, not redone
    assert (tmp_path / "oracle" / "episodes.jsonl").read_text().splitlines()[:1] == log
    assert json.loads(out.read_text())["oracle_result"]["episodes"] == 2


def test_oracle_refuses_an_unknown_kind(pusht):
    with pytest.raises(ValueError, match="'latent' or 'state'"):
        SimulatorModel(tiny_world_model(), pusht, envs.make("pusht"), "pixels")
    with pytest.raises(ValueError, match="push-T's state layout"):
        SimulatorModel(tiny_world_model(), envs.make("maze"), envs.make("maze"), "state")


def test_oracle_readout_goal_needs_the_latent_oracle(capsys):
    from experiments.oracle_planning import main

    with pytest.raises(SystemExit):  # argparse's usage error, before any model is loaded
        main(["--oracle", "state", "--readout-goal"])
    assert "--readout-goal needs --oracle latent" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--oracle", "latent", "--agent-weight", "0.3"])
    assert "--agent-weight applies to the state oracles" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--oracle", "state", "--agent-weight", "0.3", "--agent-weight-at-end", "1"])
    assert "need the budget horizon" in capsys.readouterr().err


def test_energy_split_scores_the_made_up_states_against_the_goal(pusht):
    from experiments.energy_split import split
    from wmplan.evaluate import Task

    start = pusht.get_state()
    start[5:] = 0.0
    goal = start.copy()
    goal[2:4] += 40.0  # the block moved, the agent did not: "block solved" is the goal itself
    rows = split(pusht, tiny_world_model(), [Task(0, 0, start, goal)])
    assert len(rows) == 1 and set(rows[0]) == {"seed", "start", "block_solved", "agent_solved"}
    assert rows[0]["block_solved"] == {"visual": 0.0, "proprio": 0.0}
    assert rows[0]["agent_solved"]["visual"] > 0.0 and rows[0]["start"]["visual"] > 0.0


def test_latent_oracle_scores_on_another_token_grid(tmp_path, tiny_pusht_checkpoint, capsys):
    from wmplan.encoders import load_encoder
    from wmplan.world_model import WorldModel

    out = tmp_path / "fine.json"
    assert main(["--oracle", "latent", "--pool-grid", "0", "--episodes", "1", "--checkpoint", str(tiny_pusht_checkpoint),
                 "--out", str(out), "--planner-settings", '{"num_samples": 8, "num_elites": 2, "iterations": 1}', "--quiet"]) == 0
    every_patch = load_encoder(tiny_pusht_checkpoint, pool_grid=0).config.tokens_per_frame
    assert json.loads(out.read_text())["tokens_per_frame"] == every_patch > WorldModel.load(tiny_pusht_checkpoint).latent_shape[0]
    with pytest.raises(SystemExit):
        main(["--oracle", "state", "--pool-grid", "0"])
    assert "--pool-grid needs --oracle latent" in capsys.readouterr().err


def test_oracle_overrides_the_mpc_loop_and_energy_and_labels_the_row(tmp_path, tiny_pusht_checkpoint, capsys):
    from experiments.make_results import oracle_table

    out = tmp_path / "pusht_oracle_state_cem-horizon2.json"
    args = ["--oracle", "state", "--episodes", "1", "--checkpoint", str(tiny_pusht_checkpoint), "--out", str(out),
            "--planner-settings", '{"num_samples": 8, "num_elites": 2, "iterations": 1}', "--quiet"]
    assert main([*args, "--mpc-settings", '{"horizon": 2, "budget": 50}', "--agent-weight", "0.5",
                 "--agent-weight-at-end", "1"]) == 0
    result = json.loads(out.read_text())
    assert result["mpc"]["horizon"] == 2 and result["mpc_overrides"] == {"horizon": 2, "budget": 50}
    assert (result["agent_weight"], result["agent_weight_at_end"]) == (0.5, 1.0)
    assert result["learned_model_same_seeds"] is None  # another loop than the benchmark's: not comparable
    assert ", MPC budget=50, MPC horizon=2, agent w=0.5 (1 in the plans that end the episode) |" in oracle_table(tmp_path)
    with pytest.raises(SystemExit):
        main([*args, "--mpc-settings", '{"horizon": 0}'])
    assert "--mpc-settings" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*args, "--mpc-settings", '{"horizn": 8}'])
    assert "fields: horizon" in capsys.readouterr().err


def test_latent_oracle_plans_on_another_encoders_latents(tmp_path, tiny_pusht_checkpoint, capsys):
    from wmplan.encoders import encoder_hash, load_encoder, save_encoder
    from wmplan.encoders.projection import projection_from_tokens

    own = load_encoder(tiny_pusht_checkpoint)
    tokens = torch.randn(40, own.config.patch_tokens * own.config.embed_dim)  # [M, N'*D]
    projected, _ = projection_from_tokens(own, tokens, 3, whiten=True)
    enc = tmp_path / "projected.pt"
    save_encoder(projected, enc)
    out = tmp_path / "projected.json"
    assert main(["--oracle", "latent", "--encoder", str(enc), "--proprio-weight", "2", "--proprio-weight-early", "0",
                 "--mpc-settings", '{"budget": 50}', "--episodes", "1",
                 "--checkpoint", str(tiny_pusht_checkpoint), "--out", str(out),
                 "--planner-settings", '{"num_samples": 8, "num_elites": 2, "iterations": 1}', "--quiet"]) == 0
    result = json.loads(out.read_text())
    assert result["tokens_per_frame"] == 1 and result["encoder_hash"] == encoder_hash(projected)
    assert result["encoder_override"] == str(enc) and (result["proprio_weight"], result["proprio_weight_early"]) == (2.0, 0.0)
    assert result["learned_model_same_seeds"] is None  # another energy than the benchmark's: not comparable
    from experiments.make_results import oracle_table

    out.rename(tmp_path / "pusht_oracle_latent_cem.json")
    assert (", proprio w=2, proprio w 0 before the last plans | simulator + frozen encoder `projected.pt`, "
            "1 tokens per frame") in oracle_table(tmp_path)
    with pytest.raises(SystemExit):
        main(["--oracle", "state", "--proprio-weight-early", "0", "--mpc-settings", '{"budget": 50}'])
    assert "--proprio-weight-early needs --oracle latent" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--oracle", "state", "--encoder", str(enc)])
    assert "--encoder needs --oracle latent" in capsys.readouterr().err


def _pusht_state_model(seed=0):
    """A random MLP in `experiments.state_dynamics`'s layout (8 features, one planned step of 5 push-T actions)."""
    from experiments.state_dynamics import FEATURES, StateModel

    torch.manual_seed(seed)
    mean = torch.tensor([256.0, 256.0, 256.0, 256.0, 0.0, 0.0, 0.0, 0.0])
    std = torch.tensor([100.0, 100.0, 100.0, 100.0, 0.7, 0.7, 50.0, 50.0])
    return StateModel(mean, std, action_dim=10, width=16).eval(), FEATURES


def test_state_model_oracle_rolls_each_member_from_the_true_state(pusht, rng):
    from experiments.oracle_planning import LearnedStateModel
    from wmplan.probe import state_targets

    (mlp, features), (other, _) = _pusht_state_model(0), _pusht_state_model(1)
    model = LearnedStateModel(tiny_world_model(), pusht, [mlp, other], radius=60.0)
    start = pusht.get_state()
    actions = _candidates(rng) * 1.5  # out of the box: clipped as the env clips them
    z = model.rollout(None, actions)  # [M, H, K, 6]: member k's trajectory on token k
    assert z.shape == (3, 2, 2, 6) and model.latent_shape == (2, 6)
    for k, member in enumerate((mlp, other)):
        x = torch.as_tensor(state_targets(start[None], pusht.state_names, features))
        with torch.no_grad():
            for h in range(2):
                x = member(x, actions[1:2, h].clamp(-1, 1))
                lever = 60.0 * x[0, 4:6] / x[0, 4:6].norm()
                torch.testing.assert_close(z[1, h, k], torch.cat([x[0, :4], lever]) / 100.0)
    np.testing.assert_array_equal(pusht.get_state(), start)  # the episode's env is read, never stepped
    goal = model.encode(pusht.goal_observation()["pixels"][None])  # the state oracle's goal, on every token
    assert goal.shape == (1, 2, 6)
    np.testing.assert_allclose(goal[0, :, 2:4].numpy(), np.tile(pusht.goal_state[2:4] / 100.0, (2, 1)), rtol=1e-6)


def test_state_model_ensemble_energy_adds_the_members_spread(pusht):
    """With the goal on every token, the L2 goal energy is the mean's distance plus the members' variance."""
    from wmplan.costs import CostContext, GoalEnergy

    g = torch.zeros(1, 2, 6)
    z = torch.zeros(1, 1, 1, 2, 6)  # [B, N, H, K, D]
    z[..., 0, 0], z[..., 1, 0] = 1.0, 3.0  # members at 1 and 3 on one feature: mean 2, variance 1
    energy = GoalEnergy().amount(CostContext(actions=torch.zeros(1, 1, 1, 10), z_pred=z, z_goal=g))
    torch.testing.assert_close(energy, torch.tensor([[(2.0**2 + 1.0) / 6]]))


def test_state_model_file_round_trips_and_refuses_other_checkpoints(tmp_path):
    from experiments.state_dynamics import load_state_model, save_state_model
    from wmplan.checkpoint import CheckpointError

    members = [_pusht_state_model(0)[0], _pusht_state_model(1)[0]]
    save_state_model(members, tmp_path / "sm.pt", steps=3)
    back = load_state_model(tmp_path / "sm.pt")
    assert len(back) == 2
    x, a = torch.randn(4, 8), torch.randn(4, 10)
    with torch.no_grad():
        for mine, theirs in zip(back, members):
            torch.testing.assert_close(mine(x, a), theirs(x, a), rtol=0, atol=0)
    torch.save({"kind": "world_model"}, tmp_path / "wm.pt")
    with pytest.raises(CheckpointError, match="expected 'state_model'"):
        load_state_model(tmp_path / "wm.pt")


def test_state_model_oracle_script_runs_benchmark_episodes(tmp_path, tiny_pusht_checkpoint, capsys):
    from experiments.state_dynamics import save_state_model

    save_state_model([_pusht_state_model()[0]], tmp_path / "sm.pt", data="/d/pusht_tiny", train_episodes=3)
    out = tmp_path / "sm.json"
    assert main(["--oracle", "state-model", "--state-model", str(tmp_path / "sm.pt"), "--episodes", "1",
                 "--checkpoint", str(tiny_pusht_checkpoint), "--out", str(out),
                 "--planner-settings", '{"num_samples": 8, "num_elites": 2, "iterations": 1}', "--quiet"]) == 0
    result = json.loads(out.read_text())
    assert result["oracle"] == "state-model" and result["oracle_result"]["episodes"] == 1
    assert result["state_model"]["file"] == str(tmp_path / "sm.pt") and len(result["state_model"]["sha1"]) == 40
    assert result["state_model"]["members"] == 1 and result["state_model"]["fit"]["train_episodes"] == 3
    from experiments.make_results import oracle_table

    out.rename(tmp_path / "pusht_oracle_state-model_cem.json")
    assert (" | true-state MLP learned from 3 episodes of `pusht_tiny`, true-state distance (learned state model) | "
            in oracle_table(tmp_path))
    with pytest.raises(SystemExit):
        main(["--oracle", "state-model", "--episodes", "1"])
    assert "--oracle state-model and --state-model FILE go together" in capsys.readouterr().err
