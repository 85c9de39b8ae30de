"""experiments/make_results.py: docs are generated from result files, never typed."""

import json

from experiments.make_results import main


def speed_file(path, median):
    from experiments.make_results import shipped_checkpoints

    path.write_text(json.dumps({  # timed on the shipped maze checkpoint
        "env": "maze", "guardrail": True, "route": True, "target_s": 0.25, "checkpoint_sha1": shipped_checkpoints().get("maze"),
        "hardware": {"cpu": "Test CPU", "cores": 2, "torch_threads": 2, "torch": "2.13.0+cpu"},
        "rows": [{"planner": "icem", "settings": {"num_samples": 48}, "replans": 18, "median_s": median,
                  "p90_s": median * 1.1, "predictor_calls": 1440.0, "gflop_per_replan": 6.64,
                  "achieved_gflops": 40.0, "meets_target": median <= 0.25}]}))


def test_speed_table_is_written_between_the_readme_markers(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    speed_file(results / "maze_planner_speed_icem48.json", 0.155)
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- speed:start -->\nold table\n<!-- speed:end -->\noutro\n")
    assert main(["--results", str(results), "--readme", str(readme), "--out", str(tmp_path / "RESULTS.md")]) == 0
    text = readme.read_text()
    row = "| maze | icem | num_samples=48 | goal + route + keep-out | 0.155 | 0.171 | 6.64 | 40.0 | yes |"
    assert "old table" not in text and row in text and text.startswith("intro\n") and text.endswith("outro\n")
    assert row in (tmp_path / "RESULTS.md").read_text() and "Test CPU, 2 cores" in text
    speed_file(results / "maze_planner_speed_icem48.json", 0.3)  # a slower re-measurement replaces the row
    main(["--results", str(results), "--readme", str(readme), "--out", str(tmp_path / "RESULTS.md")])
    assert "| 0.300 | 0.330 | 6.64 | 40.0 | no |" in readme.read_text() and row not in readme.read_text()



def test_speed_rows_timed_on_another_checkpoint_are_marked(tmp_path):
    from experiments.make_results import speed_table

    speed_file(tmp_path / "maze_planner_speed.json", 0.155)
    data = json.loads((tmp_path / "maze_planner_speed.json").read_text())
    (tmp_path / "maze_planner_speed.json").write_text(json.dumps(data | {"checkpoint_sha1": "old"}))
    assert "| maze | icem (old checkpoint) |" in speed_table(tmp_path, {"maze": "new"})
    assert "re-run `experiments/bench_planner_speed.py`" in speed_table(tmp_path, {"maze": "new"})
    assert "| maze | icem |" in speed_table(tmp_path, {"maze": "old"}) and "re-run" not in speed_table(tmp_path, {"maze": "old"})
    results = tmp_path / "results"
    results.mkdir()
    (results / "pusht_training_cost.json").write_text(json.dumps({
        "env": "pusht", "target_minutes": 45,
        "hardware": {"cpu": "Test CPU", "cores": 2, "torch_threads": 2, "torch": "2.13.0+cpu"},
        "measured": {"pretrain_encoder": {"per_step_s": 2.5}, "train": {"per_step_s": 0.1, "feature_cache_s": 90.0}},
        "projected": {"cli_defaults": {"pretrain_encoder_steps": 3000, "train_steps": 20000, "total_minutes": 160.4}}}))
    readme = tmp_path / "README.md"
    readme.write_text("<!-- cost:start -->\n<!-- cost:end -->\n")
    main(["--results", str(results), "--readme", str(readme), "--out", str(tmp_path / "RESULTS.md")])
    text = readme.read_text()
    assert "| pusht | cli defaults | 3000 | 20000 | encoder's grid | 2.50 | 0.100 | 90 | 160 | no |" in text
    cost = json.loads((results / "pusht_training_cost.json").read_text())
    (results / "pusht_training_cost.json").write_text(json.dumps(cost | {"train_pool_grid": 0}))
    main(["--results", str(results), "--readme", str(readme), "--out", str(tmp_path / "RESULTS.md")])
    assert "| pusht | cli defaults | 3000 | 20000 | every patch | 2.50 |" in readme.read_text()
    assert "projected" in text and "Test CPU, 2 cores" in text


def test_oracle_table_reads_the_learned_row_from_the_benchmark_and_marks_old_checkpoints(tmp_path):
    from experiments.make_results import oracle_table

    episodes = [{"seed": s, "success": s == 0, "metrics": {"block_pos_error": 10.0 * s}} for s in range(3)]
    bench = tmp_path / "bench" / "pusht-cem"
    bench.mkdir(parents=True)
    (bench / "episodes.jsonl").write_text("".join(json.dumps(e) + "\n" for e in episodes))
    (bench / "summary.json").write_text(json.dumps({"checkpoint_sha1": "new"}))
    for oracle in ("latent", "state"):
        (tmp_path / f"pusht_oracle_{oracle}_cem.json").write_text(json.dumps({
            "env": "pusht", "oracle": oracle, "planner": "cem", "overrides": {}, "checkpoint_sha1": "old",
            "oracle_result": {"episodes": 2, "success": 1.0, "ci95": [0.3, 1.0], "metrics": {}},
            "episodes": [{"seed": s, "replan_median_s": 2.0} for s in (0, 1)]}))
    table = oracle_table(tmp_path, {"pusht": "new"})
    # the learned model on the oracle's two seeds (one success), from the benchmark's episodes
    assert "| pusht | cem | learned world model (its benchmark episodes) | 0.50 [" in table and "| 5.000 |" in table
    assert "| pusht | cem (old checkpoint) | simulator + frozen encoder (latent oracle) |" in table
    assert "| pusht | cem | simulator, true-state distance (state oracle) |" in table  # uses no checkpoint
    assert "| pusht | cem (old checkpoint) | learned" in oracle_table(tmp_path, {"pusht": "newer"})
    (tmp_path / "pusht_oracle_latent_cem-grid8.json").write_text(json.dumps({  # `--pool-grid 0`: every patch
        "env": "pusht", "oracle": "latent", "planner": "cem", "overrides": {}, "checkpoint_sha1": "new",
        "pool_grid_override": 0, "tokens_per_frame": 64,
        "oracle_result": {"episodes": 2, "success": 0.5, "ci95": [0.1, 0.9], "metrics": {}},
        "episodes": [{"seed": s, "replan_median_s": 2.0} for s in (0, 1)]}))
    table = oracle_table(tmp_path, {"pusht": "new"})
    assert "| pusht | cem | simulator + frozen encoder, 64 tokens per frame (latent oracle) | 0.50 [" in table
    # measured from an older checkpoint file whose encoder, re-gridded, is the shipped one's: current
    data = json.loads((tmp_path / "pusht_oracle_latent_cem-grid8.json").read_text())
    (tmp_path / "pusht_oracle_latent_cem-grid8.json").write_text(json.dumps(data | {"checkpoint_sha1": "old", "encoder_hash": "e64"}))
    assert "| pusht | cem | simulator + frozen encoder, 64 tokens" in oracle_table(tmp_path, {"pusht": "new"}, {"pusht": "e64"})
    assert "| pusht | cem (old checkpoint) | simulator + frozen encoder, 64 tokens" in oracle_table(tmp_path, {"pusht": "new"}, {"pusht": "e16"})
    assert table.count("learned world model") == 1  # the same learned row serves both latent oracles


def test_a_learned_state_model_row_names_its_data_steps_and_ensemble(tmp_path):
    from experiments.make_results import oracle_table

    for members, steps in ((1, 5000), (5, 50000)):
        (tmp_path / f"pusht_oracle_state-model-{members}_cem.json").write_text(json.dumps({
            "env": "pusht", "oracle": "state-model", "planner": "cem", "overrides": {},
            "state_model": {"members": members, "fit": {"data": "/x/data/pusht_5k", "train_episodes": 4500, "steps": steps}},
            "oracle_result": {"episodes": 1, "success": 1.0, "ci95": [0.2, 1.0], "metrics": {}},
            "episodes": [{"seed": 0, "replan_median_s": 0.1}]}))
    table = oracle_table(tmp_path)
    assert "true-state MLP learned from 4500 episodes of `pusht_5k`, 5000 steps, true-state distance" in table
    assert "from 4500 episodes of `pusht_5k`, 50000 steps (ensemble of 5), true-state distance" in table


def test_successes_are_split_by_what_the_zero_action_already_meets(tmp_path):
    from experiments.make_results import floor_table
    from experiments.success_beyond_floor import main as split_main

    def episode(seed, success, block):
        return json.dumps({"seed": seed, "success": success, "metrics": {"success_block": block}})

    bench = tmp_path / "bench"
    for name, rows in {"pusht-zero": [(0, False, True), (1, False, False), (2, False, False)],
                       "pusht-gd": [(0, True, True), (1, True, True), (2, False, False)],
                       "pusht-short": [(0, True, True)],  # fewer seeds: split on those it played
                       "maze-cem": [(0, True, True)]}.items():  # another env: not read
        (bench / name).mkdir(parents=True)
        (bench / name / "episodes.jsonl").write_text("\n".join(episode(*r) for r in rows) + "\n")
    (tmp_path / "pusht_oracle_state_cem.json").write_text(json.dumps({"episodes": [
        {"seed": 1, "success": True, "metrics": {}}, {"seed": 7, "success": True, "metrics": {}}]}))  # seed 7: unsplittable
    out = tmp_path / "pusht_success_beyond_floor.json"
    assert split_main(["--bench", str(bench), "--oracles", str(tmp_path), "--out", str(out)]) == 0
    runs = json.loads(out.read_text())["runs"]
    assert runs == {"pusht-gd": {"episodes": 3, "floor_met": 1, "successes": 2, "successes_floor_already_met": 1,
                                 "successes_beyond_floor": 1},
                    "pusht-short": {"episodes": 1, "floor_met": 1, "successes": 1, "successes_floor_already_met": 1,
                                    "successes_beyond_floor": 0}}
    assert "| pusht | pusht-gd | 3 | 2 | 1 | 1 | 1 |" in floor_table(tmp_path)


def probe_file(path, agent_x, dense=None, split_seed=None):
    r2 = {"agent_x": agent_x, "agent_y": 0.97, "block_x": 0.99, "block_y": 0.99, "sin(block_theta)": 0.96,
          "cos(block_theta)": 0.97, "ridge": {"agent_x": 0.001}}
    record = {"encoder": "enc.pt", "pool_grid": 4, "encoder_meta": {"dino_config": {"steps": 6000, "snapshot_step": 4000}},
              "encoder_probe_r2": {"pretrained": r2, "random_init": r2 | {"agent_x": 0.5}, "train_frames": 10, "val_frames": 5}}
    if split_seed is not None:
        record["encoder_probe_r2"]["split_seed"] = split_seed
    if dense is not None:
        record["encoder_probe_r2_dinov2_dense"] = record["encoder_probe_r2"] | {"pretrained": r2 | {"agent_x": dense}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


def test_probe_table_reads_every_feature_set_and_judges_the_lowest_target(tmp_path):
    results = tmp_path / "results"
    probe_file(results / "probes" / "enc.json", agent_x=0.93, dense=0.951)
    probe_file(results / "probes" / "split1.json", agent_x=0.94, split_seed=1)
    (results / "pusht_world_model.json").write_text(json.dumps({"encoder_probe_r2": {}}))  # a world model's: not an encoder probe
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- probe:start -->\nold\n<!-- probe:end -->\n")
    main(["--results", str(results), "--readme", str(readme), "--out", str(tmp_path / "RESULTS.md")])
    text = readme.read_text()
    patch = ("| `probes/enc.json` | 4000 of 6000 | 4x4 | patch tokens | 10 / 5 | 0.930 / 0.970 / 0.990 / 0.990 / 0.960 / 0.970 | "
             "0.500 / 0.970 / 0.990 / 0.990 / 0.960 / 0.970 | 0.930 | no |")
    assert patch in text and "old" not in text
    dense_row = next(line for line in text.splitlines() if "DINOv2 dense" in line)
    assert dense_row.endswith("| 0.951 / 0.970 / 0.990 / 0.990 / 0.960 / 0.970 | 0.500 / 0.970 / 0.990 / 0.990 / 0.960 / 0.970 | 0.951 | yes |")
    assert "| `probes/split1.json` | 4000 of 6000 | 4x4 | patch tokens | 10 / 5 (split 1) | 0.940 / " in text
    assert "pusht_world_model" not in text and patch in (tmp_path / "RESULTS.md").read_text()
