"""experiments/plan_vs_reality.py: the model's prediction for each executed planned step against the simulator."""

import json

from conftest import tiny_world_model
from experiments.plan_vs_reality import main, summarize


def test_summary_splits_steps_by_whether_the_block_moved():
    rows = [  # block still, predicted 3-4-5 mm off; block moved 10 mm, predicted to stay
        {"start": [0, 0], "true": [0, 0], "predicted": [3, 4], "real_read": [0, 1]},
        {"start": [0, 0], "true": [10, 0], "predicted": [0, 0], "real_read": [10, 2]},
    ]
    s = summarize(rows, moved_mm=5.0)
    assert s["block_still"] == {"steps": 1, "pred_error_mm": 5.0, "real_read_error_mm": 1.0, "pred_move_mm": 5.0,
                                "true_move_mm": 0.0}
    moved = s["block_moved_over_5mm"]
    assert moved["pred_error_mm"] == 10.0 and moved["pred_move_mm"] == 0.0 and moved["true_move_mm"] == 10.0
    assert s["all"]["steps"] == 2 and s["all"]["pred_error_mm"] == 7.5


def test_one_episode_records_every_executed_planned_step(tmp_path):
    checkpoint, out = tmp_path / "wm.pt", tmp_path / "pvr.json"
    tiny_world_model(probe_names=("agent_x", "agent_y", "block_x", "block_y")).save(checkpoint)
    assert main(["--planner", "gd", "--planner-settings", '{"num_starts": 2, "iterations": 2}',
                 "--checkpoint", str(checkpoint), "--episodes", "1", "--out", str(out)]) == 0
    steps = json.loads(out.read_text())["steps"]
    assert [s["step"] for s in steps] == list(range(5, 55, 5))  # 50 env steps in planned steps of 5
    assert all(len(s[k]) == 2 for s in steps for k in ("start", "true", "predicted", "real_read"))
    assert steps[1]["start"] == steps[0]["true"]  # a planned step starts where the last one ended


def test_the_learned_state_model_is_checked_against_the_simulator(tmp_path):
    import torch

    from experiments.state_dynamics import FEATURES, StateModel, save_state_model

    checkpoint, out, sm = tmp_path / "wm.pt", tmp_path / "pvr.json", tmp_path / "sm.pt"
    tiny_world_model().save(checkpoint)  # no block probe: the state model's block is read directly
    torch.manual_seed(0)
    save_state_model([StateModel(torch.zeros(len(FEATURES)), torch.ones(len(FEATURES)), 10, width=8)], sm)
    assert main(["--planner", "cem", "--planner-settings", '{"num_samples": 4, "num_elites": 2, "iterations": 1}',
                 "--checkpoint", str(checkpoint), "--state-model", str(sm), "--episodes", "1", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["state_model"] == str(sm) and len(result["steps"]) == 10
    # the real read is the true state itself, so its error is zero; the prediction is the MLP's
    assert result["summary"]["all"]["real_read_error_mm"] == 0.0
    steps = result["steps"]
    assert steps[1]["start"] == steps[0]["true"]
