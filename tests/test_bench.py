"""`wmplan bench` end to end on a tiny random checkpoint, resume, results files, the notebook."""

import dataclasses
import hashlib
import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

import envs
from conftest import tiny_world_model
from wmplan.bench import build_agent, load_model, load_spec, mpc_fingerprint
from wmplan.cli import main
from wmplan.mpc import MPCConfig
from wmplan.results import STALE_MARK, results_markdown, wilson_interval

REPO = Path(__file__).resolve().parents[1]


def test_wilson_interval_brackets_the_rate():
    lo, hi = wilson_interval(45, 50)
    assert lo < 0.9 < hi and 0.78 < lo and hi < 0.97
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0


def test_bench_cli_writes_results_and_resumes(tmp_path, tiny_pusht_checkpoint, capsys):
    out = tmp_path / "b"
    args = ["bench", "--env", "pusht", "--planner", "cem", "--episodes", "2", "--checkpoint", str(tiny_pusht_checkpoint),
            "--out", str(out), "--quiet"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "| pusht | cem |" in printed and "torch threads" in printed
    summary = json.loads((out / "summary.json").read_text())
    row = summary["row"]
    assert row["episodes"] == 2 and 0.0 <= row["success_lo"] <= row["success"] <= row["success_hi"] <= 1.0
    assert row["replans"] == 2 * 10  # 50 env steps / (1 planned step x frameskip 5) per episode
    assert row["predictor_calls_per_replan"] == 128 * 6 * 5  # push-T cem: samples x iterations x horizon
    assert (out / "episodes.csv").read_text().count("\n") == 3
    # the results doc marks a row measured with another checkpoint than the current one
    sha1 = hashlib.sha1(tiny_pusht_checkpoint.read_bytes()).hexdigest()
    assert summary["checkpoint_sha1"] == sha1
    current = results_markdown([out], checkpoints={"pusht": sha1})
    assert "| pusht | cem |" in current and STALE_MARK not in current
    assert f"| pusht | cem{STALE_MARK} |" in results_markdown([out], checkpoints={"pusht": "0" * 40})
    assert list((out / "videos").glob("*.gif"))
    log = (out / "episodes.jsonl").read_text().splitlines()
    # an interruption cut the next record mid-line; resume: a third episode is added, the first two
    # are not redone, and the cut line is set aside instead of fusing with the next record
    with open(out / "episodes.jsonl", "a") as f:
        f.write('{"index": 2, "succ')
    assert main([*args[:6], "3", *args[7:]]) == 0
    lines = (out / "episodes.jsonl").read_text().splitlines()
    assert lines[:2] == log and len(lines) == 3 and all(json.loads(line)["index"] == i for i, line in enumerate(lines))
    assert (out / "episodes.superseded.jsonl").read_text() == '{"index": 2, "succ\n'
    # other settings in the same folder: the old episodes are set aside, not reused and not lost
    assert main([*args[:6], "1", *args[7:], "--guardrail"]) == 0
    assert (out / "episodes.superseded.jsonl").read_text().splitlines()[1:] == lines
    assert len((out / "episodes.jsonl").read_text().splitlines()) == 1


def test_bench_budget_horizon_plans_up_to_the_episode_end(tmp_path, tiny_pusht_checkpoint):
    out = tmp_path / "h"
    assert main(["bench", "--env", "pusht", "--planner", "cem", "--episodes", "1", "--budget-horizon", "--checkpoint",
                 str(tiny_pusht_checkpoint), "--out", str(out), "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["row"]["planner"] == "cem + budget horizon" and summary["mpc"]["budget"] == 50
    # re-plans at env steps 0, 5, ..., 45 plan min(5, planned steps left) = 5 x 6, then 4, 3, 2, 1: 40 steps
    assert summary["row"]["predictor_calls_per_replan"] == 128 * 6 * 40 / 10
    # runs logged before `budget` existed keep their fingerprint (and so resume)
    assert "budget" not in mpc_fingerprint(MPCConfig()) and mpc_fingerprint(MPCConfig(budget=50))["budget"] == 50


def test_bench_early_proprio_weight_holds_until_the_plans_that_end_the_episode(tmp_path, tiny_pusht_checkpoint, capsys):
    out = tmp_path / "e"
    args = ["bench", "--env", "pusht", "--planner", "cem", "--episodes", "1", "--checkpoint", str(tiny_pusht_checkpoint),
            "--planner-settings", '{"num_samples": 8, "num_elites": 2, "iterations": 1}', "--quiet",
            "--proprio-weight-early", "0"]
    assert main([*args, "--budget-horizon", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["row"]["planner"].endswith("+ budget horizon, proprio w 0 before the last plans")
    assert (summary["proprio_weight"], summary["proprio_weight_early"]) == (0.1, 0.0)
    assert main([*args, "--out", str(tmp_path / "x")]) == 2  # without the budget no plan knows it ends the episode
    assert "needs the budget horizon" in capsys.readouterr().err
    env = envs.make("pusht")
    spec = dataclasses.replace(load_spec("pusht"), proprio_weight_early=0.0)
    agent, _ = build_agent(spec, load_model(tiny_pusht_checkpoint, env, "pusht", "cpu"), "cem", env.action_space)
    proprio = {t.name: t for t in agent.controller.costs.terms}["goal_proprio"]
    assert (proprio.weight, proprio.early_weight) == (0.1, 0.0)


def test_bench_with_keep_out_guardrail_reports_violations(tmp_path, tiny_pusht_checkpoint):
    out = tmp_path / "g"
    assert main(["bench", "--env", "pusht", "--planner", "cem", "--episodes", "1", "--guardrail", "--checkpoint",
                 str(tiny_pusht_checkpoint), "--out", str(out), "--quiet"]) == 0
    row = json.loads((out / "summary.json").read_text())["row"]
    assert row["planner"] == "cem + keep-out" and 0.0 <= row["keep_out_fraction"] <= 1.0


def test_bench_with_readout_goal_scores_the_probe_read_block(tmp_path, capsys):
    out, checkpoint = tmp_path / "r", tmp_path / "wm.pt"
    tiny_world_model(probe_names=("agent_x", "agent_y", "block_x", "block_y")).save(checkpoint)
    args = ["bench", "--env", "pusht", "--planner", "cem", "--episodes", "1", "--readout-goal", "--checkpoint",
            str(checkpoint), "--out", str(out), "--quiet"]
    assert main([*args, "--readout-goal-weight", "0.5"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["row"]["planner"] == "cem + readout goal w=0.5"
    assert summary["readout_goal"] == {"names": ["block_x", "block_y"], "scale": 50.0, "weight": 0.5}
    first = (out / "episodes.jsonl").read_text()
    assert main(args) == 0  # the config's weight (3) in the same folder: the 0.5 episode is set aside, not reused
    assert json.loads((out / "summary.json").read_text())["row"]["planner"] == "cem + readout goal w=3"
    assert (out / "episodes.superseded.jsonl").read_text() == first
    capsys.readouterr()
    assert main([a for a in args if a != "--readout-goal"] + ["--readout-goal-weight", "0.5"]) == 2
    assert "need --readout-goal" in capsys.readouterr().err
    assert main(["bench", "--env", "maze", "--readout-goal", "--readout-goal-weight", "1", "--episodes", "1",
                 "--out", str(tmp_path / "m"), "--quiet"]) == 2
    assert "maze has no readout goal configured" in capsys.readouterr().err


def test_bench_readout_goal_settings_choose_what_the_probe_reads(tmp_path, capsys):
    checkpoint = tmp_path / "wm.pt"
    names = ("agent_x", "agent_y", "block_x", "block_y", "sin(block_theta)", "cos(block_theta)")
    tiny_world_model(probe_names=names).save(checkpoint)
    args = ["bench", "--env", "pusht", "--planner", "cem", "--episodes", "1", "--readout-goal", "--checkpoint",
            str(checkpoint), "--quiet", "--readout-goal-settings"]
    pose = '{"names": ["block_x", "block_y", "sin(block_theta)", "cos(block_theta)"], "scale": [50, 50, 0.87, 0.87]}'
    assert main([*args, pose, "--out", str(tmp_path / "r")]) == 0
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["readout_goal"] == {"names": list(names[2:]), "scale": [50, 50, 0.87, 0.87], "weight": 3.0}
    assert summary["row"]["planner"] == "cem + readout goal w=3 [block_x, block_y, sin(block_theta), cos(block_theta)]"
    capsys.readouterr()
    with pytest.raises(SystemExit):  # argparse's usage error
        main([*args, '{"nmes": ["block_x"]}'])
    assert "unknown readout-goal setting(s) ['nmes']" in capsys.readouterr().err
    bad = {'{"names": ["block_x"], "scale": [50, 50]}': "2 scales for 1 names",
           '{"names": ["block_z"]}': "probe has no output named 'block_z'"}
    for text, message in bad.items():
        assert main([*args, text, "--out", str(tmp_path / "bad")]) == 2
        assert message in capsys.readouterr().err


def test_bench_with_route_energy_and_keep_out_on_the_maze(tmp_path, capsys):
    from conftest import tiny_world_model

    ckpt = tmp_path / "maze.pt"
    tiny_world_model(env="maze").save(ckpt)
    out = tmp_path / "r"
    args = ["bench", "--env", "maze", "--planner", "cem", "--episodes", "1", "--checkpoint", str(ckpt), "--out", str(out),
            "--quiet", "--planner-settings", '{"num_samples": 16, "num_elites": 4, "iterations": 2}']
    assert main([*args, "--route", "--guardrail"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["row"]["planner"] == "cem iterations=2 num_elites=4 num_samples=16 + route + keep-out"
    assert summary["route"]["graph"] == "experiments/checkpoints/maze/route_graph.pt"
    first = json.loads((out / "episodes.jsonl").read_text())
    assert main(args) == 0  # without the route: other settings, so the episode is set aside and redone
    assert json.loads((out / "episodes.superseded.jsonl").read_text())["fingerprint"] == first["fingerprint"]
    capsys.readouterr()
    assert main(["bench", "--env", "pusht", "--route", "--out", str(tmp_path / "p")]) == 2
    assert "pusht has no route graph configured" in capsys.readouterr().err


def test_bench_planner_settings_override_the_budget_and_name_the_row(tmp_path, tiny_pusht_checkpoint, capsys):
    out = tmp_path / "s"
    args = ["bench", "--env", "pusht", "--planner", "cem", "--episodes", "1", "--checkpoint", str(tiny_pusht_checkpoint),
            "--out", str(out), "--quiet", "--planner-settings"]
    assert main([*args, '{"num_samples": 32, "num_elites": 4}']) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["row"]["planner"] == "cem num_elites=4 num_samples=32"
    assert summary["planner_settings"] == {"num_samples": 32, "num_elites": 4, "iterations": 6}
    assert summary["row"]["predictor_calls_per_replan"] == 32 * 6 * 5
    capsys.readouterr()
    with pytest.raises(SystemExit):  # not JSON: argparse's usage error
        main([*args, "{num_samples: 32}"])
    assert "must be a JSON object" in capsys.readouterr().err
    assert main([*args, '{"samples": 32}']) == 2  # JSON, but no such setting
    assert "unknown cem planner setting(s) ['samples']" in capsys.readouterr().err


def test_bench_baselines_act_without_a_model_on_the_same_tasks(tmp_path, capsys):
    """The floors: no checkpoint is read (the default one may not even exist), the rows say so and are never
    marked as measured on an old checkpoint, and the zero action leaves the push-T agent where it started."""
    rows = {}
    for name in ("zero", "random"):
        out = tmp_path / name
        assert main(["bench", "--env", "pusht", "--planner", name, "--episodes", "2", "--checkpoint",
                     str(tmp_path / "absent.pt"), "--out", str(out), "--quiet"]) == 0
        summary = json.loads((out / "summary.json").read_text())
        assert summary["baseline"] and summary["checkpoint"] is None and summary["checkpoint_sha1"] is None
        rows[name] = summary["row"]
        assert rows[name]["planner"] == f"{name} actions (no model)" and rows[name]["replans"] == 0
        assert STALE_MARK not in results_markdown([out], checkpoints={"pusht": "0" * 40})
    assert "| pusht | zero actions (no model) |" in capsys.readouterr().out
    assert rows["zero"]["block_pos_error"] != rows["random"]["block_pos_error"]  # the random floor moved something
    zero = Path(tmp_path / "zero" / "episodes.jsonl").read_text().splitlines()
    assert len(zero) == 2 and all(json.loads(line)["metrics"]["contact"] == 0.0 for line in zero)
    # a floor has no planner, costs or guardrail to set
    assert main(["bench", "--env", "pusht", "--planner", "zero", "--guardrail", "--out", str(tmp_path / "g")]) == 2
    assert "uses no model" in capsys.readouterr().err


def test_zero_policy_clips_zero_into_the_box():
    import gymnasium as gym
    import numpy as np

    from agents import ZeroPolicy

    assert np.array_equal(ZeroPolicy(gym.spaces.Box(-1.0, 1.0, (2,))).act(), [0.0, 0.0])
    box = gym.spaces.Box(np.float32([0.5, -1.0]), np.float32([1.0, -0.2]))
    assert np.array_equal(ZeroPolicy(box).act(), np.float32([0.5, -0.2]))


def test_bench_bad_input_is_a_clear_error(tmp_path, capsys):
    assert main(["bench", "--env", "nowhere", "--out", str(tmp_path)]) == 2
    assert "unknown environment 'nowhere'" in capsys.readouterr().err
    assert main(["bench", "--env", "pusht", "--checkpoint", str(tmp_path / "missing.pt"), "--out", str(tmp_path)]) == 2
    assert "missing.pt" in capsys.readouterr().err


def test_compare_planners_notebook_runs(tmp_path, tiny_pusht_checkpoint, monkeypatch):
    monkeypatch.setenv("WMPLAN_NB_EPISODES", "1")
    monkeypatch.setenv("WMPLAN_NB_CHECKPOINT", str(tiny_pusht_checkpoint))
    monkeypatch.setenv("WMPLAN_NB_OUT", str(tmp_path))
    monkeypatch.setenv("WMPLAN_NB_PLANNERS", "cem,gd")
    nb = nbformat.read(REPO / "experiments/notebooks/compare_planners.ipynb", as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}).execute()
    assert (tmp_path / "success_vs_time.png").is_file() and (tmp_path / "cost_per_iteration.png").is_file()
    table = "".join(out.get("text", "") for out in nb.cells[3]["outputs"])
    assert "| pusht | cem |" in table and "| pusht | zero actions (no model) |" in table  # the floor beside them
    last = nb.cells[-1]["outputs"][0]["data"]["text/plain"]
    assert "'cem'" in last and "'gd'" in last


def test_demo_prints_the_planner_beside_the_zero_action_floor(tmp_path, capsys):
    """`make demo`'s command on the shipped push-T checkpoint, one episode of the fastest planner."""
    out = tmp_path / "demo"
    assert main(["demo", "--episodes", "1", "--planner", "gd", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| pusht | gd |" in printed and "| pusht | zero actions (no model) |" in printed
    assert (out / "videos" / "episode_000.gif").is_file() and (out / "zero" / "summary.json").is_file()


def test_read_episodes_skips_blank_and_cut_lines(tmp_path):
    from wmplan.evaluate import read_episodes

    log = tmp_path / "episodes.jsonl"
    log.write_text('{"index": 0, "seed": 3}\n\n{"index": 1, "see')  # an interruption cut the last record
    assert read_episodes(log) == [{"index": 0, "seed": 3}]


def test_bench_route_uses_the_graph_beside_the_checkpoint(tmp_path):
    from wmplan.bench import route_graph_for

    spec, ckpt = load_spec("maze"), tmp_path / "world_model.pt"
    assert route_graph_for(spec, ckpt) == spec.route.graph  # none beside it: the configured graph
    (tmp_path / "route_graph.pt").write_bytes(b"")
    assert route_graph_for(spec, ckpt) == str(tmp_path / "route_graph.pt")
    with pytest.raises(ValueError, match="pusht has no route graph configured"):
        route_graph_for(load_spec("pusht"), ckpt)


def test_bench_refuses_bad_numbers_devices_and_checkpoint_paths(tmp_path, tiny_pusht_checkpoint, capsys):
    base = ["bench", "--env", "pusht", "--planner", "cem", "--episodes", "1", "--quiet", "--out", str(tmp_path / "o")]
    usage = {("--proprio-weight", "nan"): "must be a finite number >= 0", ("--proprio-weight", "-5"): "must be a finite",
             ("--proprio-weight-early", "inf"): "must be a finite", ("--readout-goal-weight", "-1"): "must be a finite",
             ("--threads", "-1"): "must be an integer >= 1", ("--episodes", "0"): "must be an integer >= 1",
             ("--seed", "-3"): "must be an integer >= 0", ("--readout-goal-settings", '{"weight": "3"}'): "weight must be",
             ("--readout-goal-settings", '{"scale": "big"}'): "scale must be",
             ("--readout-goal-settings", '{"scale": [1, NaN]}'): "scale must be"}
    for (flag, value), message in usage.items():
        with pytest.raises(SystemExit):  # argparse's usage error, before any work
            main([*base, flag, value])
        assert message in capsys.readouterr().err, flag
    for device, message in {"foo": "unknown device 'foo'", "cuda:99": "device 'cuda:99'"}.items():
        for command in (base, ["train", "--env", "pusht", "--data", "d", "--encoder", "e.pt"], ["train-decoder"]):
            with pytest.raises(SystemExit):
                main([*command, "--device", device])
            assert message in capsys.readouterr().err, command[0]
    assert main([*base, "--checkpoint", str(tmp_path)]) == 2
    assert "is a directory; pass a world_model.pt" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # nothing was written


def test_episodes_csv_has_one_success_column(tmp_path, tiny_pusht_checkpoint):
    out = tmp_path / "b"
    assert main(["bench", "--env", "pusht", "--planner", "zero", "--episodes", "1", "--out", str(out), "--quiet"]) == 0
    header = (out / "episodes.csv").read_text().splitlines()[0].split(",")
    assert header.count("success") == 1 and "coverage" in header
