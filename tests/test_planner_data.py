"""experiments/planner_data.py: the agent's episodes appended to a dataset, for DAgger-style fine-tuning."""

import h5py
import numpy as np
import pytest

from conftest import tiny_world_model
from experiments.planner_data import block_moves, main
from wmplan.data import EpisodeDataset
from wmplan.data.collect import CollectConfig, collect


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("source")
    collect(CollectConfig(env="pusht", out=str(root), episodes=2, steps=20), progress=False)
    return root


def _args(checkpoint, source, out, episodes=2, seed=20_000):
    return ["--source", str(source), "--out", str(out), "--checkpoint", str(checkpoint), "--planner", "gd",
            "--planner-settings", '{"num_starts": 1, "iterations": 1}', "--episodes", str(episodes),
            "--seed", str(seed), "--noise", "0.5"]


def test_agent_episodes_follow_the_source_episodes_and_resume(tmp_path, source):
    checkpoint, out = tmp_path / "wm.pt", tmp_path / "union"
    tiny_world_model().save(checkpoint)
    assert main(_args(checkpoint, source, out, episodes=1)) == 0
    first = (out / "episodes" / "ep_000002.h5").stat().st_mtime_ns
    assert main(_args(checkpoint, source, out, episodes=2)) == 0  # resumes: episode 2 is kept, 3 is added
    assert (out / "episodes" / "ep_000002.h5").stat().st_mtime_ns == first

    union, src = EpisodeDataset(out), EpisodeDataset(source)
    assert len(union) == 4 and list(union.lengths()) == [20, 20, 50, 50]  # the benchmark's 50-step budget
    np.testing.assert_array_equal(union.episode(0)["actions"], src.episode(0)["actions"])
    with h5py.File(out / "episodes" / "ep_000002.h5") as quiet, h5py.File(out / "episodes" / "ep_000003.h5") as noisy:
        assert (quiet.attrs["noise"], noisy.attrs["noise"]) == (0.0, 0.5)  # noise on every other episode
        assert quiet.attrs["seed"] == 20_000 and noisy.attrs["seed"] == 20_001
    assert np.all(np.abs(union.episode(3)["actions"]) <= 1.0)  # noisy actions stay inside the bounds
    assert union.meta["planner_data"]["episodes"] == 2 and union.meta["episodes"] == 4

    moves = block_moves(out)  # 5-step windows: 4 per source episode, 10 per agent episode
    assert {k: v["windows"] for k, v in moves.items()} == {"source": 8, "agent_noise_off": 10, "agent_noise_on": 10}
    assert all(0.0 <= v["share_moved"] <= 1.0 for v in moves.values())


def test_benchmark_seeds_and_changed_settings_are_refused(tmp_path, source):
    checkpoint, out = tmp_path / "wm.pt", tmp_path / "union"
    tiny_world_model().save(checkpoint)
    with pytest.raises(SystemExit):
        main(_args(checkpoint, source, out, seed=0))  # the benchmark's own tasks
    assert main(_args(checkpoint, source, out, episodes=1)) == 0
    with pytest.raises(SystemExit, match="other settings"):
        main(_args(checkpoint, source, out, episodes=1)[:-1] + ["0.1"])


def test_the_agent_takes_the_benchmark_cost_options(tmp_path, source, capsys):
    checkpoint, out = tmp_path / "wm.pt", tmp_path / "union"
    tiny_world_model().save(checkpoint)
    staged = ["--budget-horizon", "--proprio-weight", "2", "--proprio-weight-early", "0"]
    with pytest.raises(SystemExit):
        main(_args(checkpoint, source, out, episodes=1) + staged[1:])  # an early weight needs the budget horizon
    assert "needs the budget horizon" in capsys.readouterr().err
    assert main(_args(checkpoint, source, out, episodes=1) + staged) == 0
    assert EpisodeDataset(out).meta["planner_data"]["costs"] == {
        "proprio_weight": 2.0, "proprio_weight_early": 0.0, "budget_horizon": True}
    with pytest.raises(SystemExit, match="other settings"):  # the same data never mixes agents with other costs
        main(_args(checkpoint, source, out, episodes=2) + staged[:-1] + ["0.5"])


def test_source_episodes_links_only_the_first_ones(tmp_path, source):
    checkpoint, out = tmp_path / "wm.pt", tmp_path / "union"
    tiny_world_model().save(checkpoint)
    assert main(_args(checkpoint, source, out, episodes=1) + ["--source-episodes", "1"]) == 0
    union = EpisodeDataset(out)
    assert list(union.lengths()) == [20, 50] and union.meta["planner_data"]["source_episodes"] == 1


def test_the_learned_state_model_can_drive_the_agent(tmp_path, source):
    import torch

    from experiments.state_dynamics import FEATURES, StateModel, save_state_model

    checkpoint, out, sm = tmp_path / "wm.pt", tmp_path / "union", tmp_path / "sm.pt"
    tiny_world_model().save(checkpoint)
    torch.manual_seed(0)
    save_state_model([StateModel(torch.zeros(len(FEATURES)), torch.ones(len(FEATURES)), 10, width=8)], sm)
    args = ["--source", str(source), "--out", str(out), "--checkpoint", str(checkpoint), "--state-model", str(sm),
            "--planner", "cem", "--planner-settings", '{"num_samples": 4, "num_elites": 2, "iterations": 1}',
            "--episodes", "1", "--seed", "20000"]
    assert main(args) == 0
    union = EpisodeDataset(out)
    assert len(union) == 3 and union.meta["planner_data"]["state_model"] == str(sm)
    assert list(union.lengths())[-1] == 50
    # staged agent weights, as oracle_planning's state-model rows plan, are recorded with the data
    staged = tmp_path / "staged"
    assert main(args[:3] + [str(staged)] + args[4:] + ["--agent-weight", "0.1", "--agent-weight-at-end", "1",
                                                       "--budget-horizon"]) == 0
    costs = EpisodeDataset(staged).meta["planner_data"]["costs"]
    assert costs["agent_weight"] == 0.1 and costs["agent_weight_at_end"] == 1 and costs["budget_horizon"]
    with pytest.raises(SystemExit):  # staging needs the budget horizon
        main(args[:3] + [str(tmp_path / "x")] + args[4:] + ["--agent-weight-at-end", "1"])
