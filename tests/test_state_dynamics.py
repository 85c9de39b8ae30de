"""experiments/state_dynamics.py: the true-state ceiling runs end to end and learns simple dynamics."""

import json

import numpy as np
import pytest
import torch

from wmplan.data import EpisodeDataset
from wmplan.data.dataset import episode_path, write_episode, write_meta

NAMES = ["agent_x", "agent_y", "block_x", "block_y", "block_theta", "d_agent_x", "d_agent_y", "d_block_x", "d_block_y", "d_block_theta"]


def make_dataset(root, env="pusht", episodes=12, steps=60):
    """Push-T's state layout; the block drifts with the actions (10 mm per unit action), the angle with their sum."""
    rng = np.random.default_rng(0)
    write_meta(root, {"env": env, "env_kwargs": {}, "image_size": 8, "action_dim": 2, "proprio_dim": 4,
                      "state_dim": 10, "state_names": NAMES})
    for e in range(episodes):
        acts = rng.uniform(-1, 1, (steps, 2)).astype(np.float32)
        s = np.zeros((steps + 1, 10))
        s[0, :5] = [256, 256, 256, 256, 0.0]
        for t in range(steps):
            s[t + 1] = s[t]
            s[t + 1, 2:4] += 10 * acts[t]
            s[t + 1, 4] += 0.05 * acts[t].sum()
        arrays = {"pixels": np.zeros((steps + 1, 8, 8, 3), np.uint8), "proprio": s[:, :4].astype(np.float32),
                  "actions": acts, "states": s}
        write_episode(episode_path(root, e), arrays, {"seed": e, "steps": steps})
    return EpisodeDataset(root)


def test_state_model_beats_a_still_block_and_reports_each_horizon(tmp_path):
    from experiments.state_dynamics import main

    make_dataset(tmp_path / "d")
    out = tmp_path / "r.json"
    assert main(["--data", str(tmp_path / "d"), "--held-out", "3", "--steps", "300", "--out", str(out),
                 "--save", str(tmp_path / "sm.pt"), "--ensemble", "2"]) == 0
    r = json.loads(out.read_text())
    assert r["saved"] == str(tmp_path / "sm.pt") and r["ensemble"] == 2
    assert (r["train_episodes"], r["held_out_episodes"]) == (9, 3)
    five = r["prediction"]["5_steps"]
    assert five["env_steps"] == 25 and five["block_pos_mm_median"] < five["no_change_baseline_block_pos_mm_median"] / 2
    assert set(r["prediction"]) == {"1_steps", "5_steps", "10_steps"}
    from experiments.state_dynamics import load_state_model

    model, other = load_state_model(tmp_path / "sm.pt")  # the fitted MLPs, for oracle_planning --oracle state-model
    assert not torch.equal(model.net[0].weight, other.net[0].weight)  # members from different seeds
    x = torch.tensor([[256.0, 256.0, 256.0, 256.0, 0.0, 1.0, 0.0, 0.0]])
    with torch.no_grad():
        moved = model(x, torch.tensor([[1.0, 0.0] * 5]))[0, 2] - x[0, 2]  # 5 actions of +1 on x: +50 mm
    assert 25.0 < float(moved) < 75.0


def test_state_dynamics_refuses_other_envs_and_impossible_splits(tmp_path):
    from experiments.state_dynamics import main

    make_dataset(tmp_path / "maze", env="maze", episodes=2, steps=60)
    with pytest.raises(SystemExit):
        main(["--data", str(tmp_path / "maze"), "--out", str(tmp_path / "r.json")])
    make_dataset(tmp_path / "d", episodes=2, steps=60)
    with pytest.raises(SystemExit):
        main(["--data", str(tmp_path / "d"), "--held-out", "1", "--train-episodes", "5", "--out", str(tmp_path / "r.json")])
    with pytest.raises(SystemExit):
        main(["--data", str(tmp_path / "d"), "--held-out", "1", "--ensemble", "0", "--out", str(tmp_path / "r.json")])


def test_held_out_episodes_can_come_from_another_dataset(tmp_path):
    from experiments.state_dynamics import main

    make_dataset(tmp_path / "train", episodes=4)
    make_dataset(tmp_path / "test", episodes=5)
    out = tmp_path / "r.json"
    assert main(["--data", str(tmp_path / "train"), "--test-data", str(tmp_path / "test"), "--held-out", "2",
                 "--steps", "50", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert (r["train_episodes"], r["held_out_episodes"], r["test_data"]) == (4, 2, str(tmp_path / "test"))
