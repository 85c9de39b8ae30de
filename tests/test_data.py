"""Collection -> dataset -> windows round trip, resume, atomicity and corrupt-file errors."""

import json

import h5py
import numpy as np
import pytest

import envs
from wmplan.cli import main
from wmplan.data import DatasetError, EpisodeDataset, episode_path, gather_window, window_index
from wmplan.data.collect import CollectConfig, collect


def _cfg(tmp_path, **kw):
    return CollectConfig(**{"env": "pusht", "out": str(tmp_path / "ds"), "episodes": 3, "steps": 12, "policy": "random"} | kw)


def test_collect_then_load_round_trip(tmp_path):
    out = collect(_cfg(tmp_path), progress=False)
    ds = EpisodeDataset(out)
    assert len(ds) == 3 and ds.meta["env"] == "pusht" and ds.meta["action_dim"] == 2
    ep = ds.episode(1)
    assert ep["pixels"].shape == (13, 64, 64, 3) and ep["actions"].shape == (12, 2)
    # the stored states replay: set the state, step the stored action, get the next stored frame
    env = envs.make("pusht")
    env.reset(seed=0)
    env.set_state(ep["states"][4])
    obs, *_ = env.step(ep["actions"][4])
    np.testing.assert_array_equal(obs["pixels"], ep["pixels"][5])
    np.testing.assert_array_equal(env.get_state(), ep["states"][5])


def test_collection_is_deterministic_and_worker_count_invariant(tmp_path):
    a = EpisodeDataset(collect(_cfg(tmp_path / "a"), progress=False))
    b = EpisodeDataset(collect(_cfg(tmp_path / "b", workers=2), progress=False))
    for i in range(3):
        np.testing.assert_array_equal(a.episode(i)["states"], b.episode(i)["states"])


def test_interrupted_collection_resumes_without_redoing_episodes(tmp_path):
    cfg = _cfg(tmp_path, episodes=4)
    collect(_cfg(tmp_path, episodes=2), progress=False)  # "interrupted" after two episodes
    first = episode_path(cfg.out, 0).stat().st_mtime_ns
    (episode_path(cfg.out, 2).parent / "ep_000002.h5.tmp").write_bytes(b"half-written")  # a crash mid-write
    collect(cfg, progress=False)
    ds = EpisodeDataset(cfg.out)
    assert len(ds) == 4
    assert episode_path(cfg.out, 0).stat().st_mtime_ns == first  # not rewritten
    assert not list(episode_path(cfg.out, 0).parent.glob("*.tmp"))
    fresh = EpisodeDataset(collect(_cfg(tmp_path / "fresh", episodes=4), progress=False))
    np.testing.assert_array_equal(ds.episode(3)["states"], fresh.episode(3)["states"])


def test_resume_with_other_settings_is_refused(tmp_path):
    collect(_cfg(tmp_path), progress=False)
    with pytest.raises(DatasetError, match="other settings"):
        collect(_cfg(tmp_path, steps=20), progress=False)


def test_corrupt_episode_file_gives_clear_error(tmp_path):
    out = collect(_cfg(tmp_path), progress=False)
    episode_path(out, 1).write_bytes(b"\x89HDF garbage")
    ds = EpisodeDataset(out)
    with pytest.raises(DatasetError, match="ep_000001.h5 is corrupt.*re-run `wmplan collect`"):
        ds.episode(1)
    # a corrupt file also counts as unfinished: collecting again repairs it
    collect(_cfg(tmp_path), progress=False)
    assert ds.episode(1)["actions"].shape == (12, 2)


def test_inconsistent_episode_is_refused(tmp_path):
    out = collect(_cfg(tmp_path), progress=False)
    with h5py.File(episode_path(out, 0), "a") as f:
        del f["proprio"]
        f["proprio"] = np.zeros((5, 4), np.float32)
    with pytest.raises(DatasetError, match="proprio has 5 rows"):
        EpisodeDataset(out).episode(0)


def test_missing_or_corrupt_dataset_dir(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        EpisodeDataset(tmp_path / "nowhere")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "meta.json").write_text("{not json")
    with pytest.raises(DatasetError, match="corrupt"):
        EpisodeDataset(tmp_path / "d")


def test_windows_with_history_and_frameskip():
    ep = {"pixels": np.arange(21)[:, None], "actions": np.arange(20 * 2).reshape(20, 2), "states": np.arange(21)[:, None]}
    idx = window_index([20, 7], n_frames=3, frameskip=5)
    assert idx.tolist() == [[0, t] for t in range(11)]  # span 10 steps: starts 0..10; 7-step episode too short
    w = gather_window(ep, start=2, n_frames=3, frameskip=5)
    assert w["pixels"].ravel().tolist() == [2, 7, 12]
    np.testing.assert_array_equal(w["actions"][0], ep["actions"][2:7].ravel())  # [fs*A] = a_2..a_6
    assert w["actions"].shape == (2, 10)


def test_cli_collect_and_bad_input(tmp_path, capsys):
    assert main(["collect", "--env", "pusht", "--episodes", "2", "--steps", "5", "--out", str(tmp_path / "c"), "--quiet",
                 "--policy", "random"]) == 0
    assert "collected 2 episodes" in capsys.readouterr().out
    assert json.loads((tmp_path / "c" / "meta.json").read_text())["env"] == "pusht"
    assert main(["collect", "--env", "warehouse", "--episodes", "1", "--out", str(tmp_path / "x")]) == 2
    assert "unknown environment 'warehouse'" in capsys.readouterr().err


def test_nan_in_an_episode_is_refused_naming_file_and_array(tmp_path):
    out = collect(_cfg(tmp_path), progress=False)
    with h5py.File(episode_path(out, 2), "a") as f:
        f["actions"][3] = np.nan
    ds = EpisodeDataset(out)
    message = r"ep_000002.h5: actions contain NaN or Inf; delete the file and re-run `wmplan collect`"
    for keys in (("proprio", "actions", "states"), ("pixels", "proprio", "actions", "states")):  # training's, all
        with pytest.raises(DatasetError, match=message):
            ds.episode(2, keys=keys)
    assert ds.episode(1)["actions"].shape == (12, 2)  # the others load


@pytest.mark.parametrize("text", ["[]", "3", '"meta"', "null"])
def test_meta_json_that_is_not_an_object_is_corrupt(tmp_path, text):
    out = collect(_cfg(tmp_path), progress=False)
    (out / "meta.json").write_text(text)
    with pytest.raises(DatasetError, match="meta.json is corrupt .*expected an object.*collect it again"):
        EpisodeDataset(out)


def test_a_file_given_as_dataset_directory_says_so(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(DatasetError, match="f is a file, expected a dataset directory"):
        EpisodeDataset(tmp_path / "f")


def test_dataset_env_check_takes_short_names_and_gymnasium_ids(tmp_path):
    ds = EpisodeDataset(collect(_cfg(tmp_path, episodes=1), progress=False))
    ds.check_env("pusht"), ds.check_env("wmplan/PushT-v0")
    with pytest.raises(DatasetError, match="collected in 'pusht', the checkpoint trained on 'maze'; use a dataset"):
        ds.check_env("maze", "the checkpoint trained on")


@pytest.mark.parametrize("kw, message", [
    ({"policy": "expert", "policy_kwargs": {"nois": 3}}, r"unknown policy_kwargs of the pusht expert policy: 'nois'; accepted: noise, random_frac, "),
    ({"env_kwargs": {"layut": 1}}, r"unknown env_kwargs of pusht: 'layut'; accepted: config, render_mode"),
    ({"env_kwargs": {"image_size": 32}}, r"'image_size'; .*set by collect itself: image_size"),  # --image-size sets it
    ({"policy": "random", "policy_kwargs": {"noise": 3}}, r"random policy: 'noise'; accepted: none"),
])
def test_unknown_collect_kwargs_fail_before_anything_is_written(tmp_path, kw, message):
    with pytest.raises(ValueError, match=message):
        collect(_cfg(tmp_path, **kw), progress=False)
    assert not (tmp_path / "ds").exists()


def test_cli_collect_unknown_kwargs_is_a_one_line_error(tmp_path, capsys):
    args = ["collect", "--env", "maze", "--episodes", "1", "--out", str(tmp_path / "x"), "--quiet"]
    assert main([*args, "--policy-kwargs", '{"nois": 3}']) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'nois'; accepted: noise, random_frac, segment_steps" in err
    assert main([*args, "--env-kwargs", '{"layut": "umaze"}']) == 2
    assert "'layut'; accepted: layout, layout_seed" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
