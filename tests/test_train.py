"""Training: loss falls on a tiny synthetic dataset, resuming is exact, probe and CLI work end to end."""

import json
import re
import shutil

import numpy as np
import pytest
import torch

from wmplan.data import EpisodeDataset
from wmplan.data.dataset import episode_path, write_episode, write_meta
from wmplan.encoders import ViTConfig, ViTEncoder, save_encoder
from wmplan.encoders.features import cache_features, cache_path, load_features
from wmplan.predictor import PredictorConfig
from wmplan.probe import ProbeConfig
from wmplan.train import TrainConfig, latent_mse, train_world_model
from wmplan.world_model import WorldModel

SIZE, STEPS = 32, 40
NAMES = ["agent_x", "agent_y", "d_agent_x", "d_agent_y"]


def render(pos):
    img = np.zeros((SIZE, SIZE, 3), np.uint8)
    img[..., 2] = 40
    r, c = int((1 - pos[1]) / 2 * (SIZE - 8)), int((pos[0] + 1) / 2 * (SIZE - 8))
    img[r : r + 8, c : c + 8] = (255, 200, 0)
    return img


def make_dataset(root, episodes=6, seed=0):
    """A point agent (a yellow square) moved by 2-d velocity actions."""
    rng = np.random.default_rng(seed)
    write_meta(root, {"env": "toy", "env_kwargs": {}, "image_size": SIZE, "action_dim": 2, "proprio_dim": 2,
                      "state_dim": 4, "state_names": NAMES})
    for e in range(episodes):
        pos, states, acts = rng.uniform(-0.8, 0.8, 2), [], rng.uniform(-1, 1, (STEPS, 2)).astype(np.float32)
        for t in range(STEPS + 1):
            vel = 0.1 * acts[t] if t < STEPS else np.zeros(2)
            states.append(np.concatenate([pos, vel]))
            pos = np.clip(pos + vel, -1, 1)
        states = np.array(states)
        arrays = {"pixels": np.stack([render(s) for s in states]), "proprio": states[:, :2].astype(np.float32),
                  "actions": acts, "states": states}
        write_episode(episode_path(root, e), arrays, {"seed": e, "steps": STEPS})
    return EpisodeDataset(root)


def encoder():
    return ViTEncoder(ViTConfig(image_size=SIZE, patch_size=8, embed_dim=16, depth=1, num_heads=2, pool_grid=2), seed=0)


PCFG = PredictorConfig(history=2, frameskip=2, width=32, depth=2, num_heads=2)


def tcfg(steps=150, **kw):
    defaults = dict(batch_size=32, lr=3e-3, warmup_steps=10, val_every=25, ckpt_every=25, val_fraction=0.34,
                    probe=ProbeConfig(steps=200))
    return TrainConfig(steps=steps, **defaults | kw)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    torch.set_num_threads(1)
    return make_dataset(tmp_path_factory.mktemp("toy"))


def test_feature_cache_is_keyed_by_encoder(dataset):
    enc = encoder()
    path = cache_features(dataset, enc, progress=False)
    assert path == cache_path(dataset.root, enc) and path.exists()
    feats = load_features(path, enc)
    assert len(feats) == len(dataset) and feats[0].shape == (STEPS + 1, 4, 16)
    with pytest.raises(ValueError, match="stale"):
        load_features(path, ViTEncoder(enc.config, seed=1))
    mtime = path.stat().st_mtime_ns
    assert cache_features(dataset, enc, progress=False) == path and path.stat().st_mtime_ns == mtime  # reused


def test_linked_episodes_take_their_tokens_from_the_source_cache(dataset, tmp_path, monkeypatch):
    import wmplan.encoders.features as features

    enc, other = encoder(), ViTEncoder(encoder().config, seed=1)  # `other` has no cache in the source
    source = load_features(cache_features(dataset, enc, progress=False), enc)
    own = make_dataset(tmp_path / "agent", episodes=1, seed=7)  # the new episode, and its own encoding
    fresh = load_features(cache_features(own, enc, progress=False), enc)[0]
    root = tmp_path / "dagger"  # the source's episodes linked, then the new one (as planner_data builds it)
    (root / "episodes").mkdir(parents=True)
    (root / "meta.json").write_text((dataset.root / "meta.json").read_text())
    for i in range(len(dataset)):
        episode_path(root, i).symlink_to(episode_path(dataset.root, i).resolve())
    episode_path(own.root, 0).rename(episode_path(root, len(dataset)))
    encoded = []
    real = features.encode_frames
    monkeypatch.setattr(features, "encode_frames", lambda e, px, bs=256: encoded.append(len(px)) or real(e, px, bs))
    grown = EpisodeDataset(root)
    feats = load_features(cache_features(grown, enc, progress=False), enc)
    assert encoded == [STEPS + 1]  # only the new episode went through the encoder
    assert all(np.array_equal(a, b) for a, b in zip(feats, source + [fresh]))
    encoded.clear()
    cache_features(grown, other, progress=False)
    assert len(encoded) == len(grown)  # without a source cache of this encoder every episode is encoded


def test_training_lowers_loss_tenfold_and_fits_probe(dataset, tmp_path):
    metrics = train_world_model(dataset, encoder(), tmp_path, "toy", PCFG, tcfg(rollout_steps=2), progress=False)
    first, last = metrics["log"][0], metrics["log"][-1]
    with torch.no_grad():
        wm = WorldModel.load(tmp_path / "world_model.pt", env="toy", image_size=SIZE, action_dim=2)
    # the untrained predictor's validation loss, measured the same way
    untrained = train_world_model(dataset, encoder(), tmp_path / "zero", "toy", PCFG, tcfg(steps=1), progress=False)
    assert last["val_teacher_forced"] < untrained["log"][-1]["val_teacher_forced"] / 10
    assert last["val_rollout"] < first["val_rollout"]
    assert metrics["probe_r2"]["agent_x"] > 0.8 and metrics["probe_r2"]["agent_y"] > 0.8
    assert wm.probe.names == ["agent_x", "agent_y"]


@pytest.mark.filterwarnings("ignore:bf16 on cpu")  # emulated on AVX2-only CI machines: slow, still correct
def test_bf16_training_learns_as_fp32_does_and_keeps_fp32_weights(dataset, tmp_path):
    bf16 = train_world_model(dataset, encoder(), tmp_path / "bf16", "toy", PCFG, tcfg(rollout_steps=2, precision="bf16"),
                             progress=False)
    fp32 = train_world_model(dataset, encoder(), tmp_path / "fp32", "toy", PCFG, tcfg(rollout_steps=2), progress=False)
    untrained = train_world_model(dataset, encoder(), tmp_path / "zero", "toy", PCFG, tcfg(steps=1), progress=False)
    val = lambda m: m["log"][-1]["val_teacher_forced"]  # noqa: E731  validated in fp32 either way
    assert val(bf16) < val(untrained) / 10 and val(bf16) < 1.5 * val(fp32)
    assert val(bf16) != val(fp32)  # the passes really ran in bf16
    state = torch.load(tmp_path / "bf16" / "world_model.pt", weights_only=True)["predictor_state"]
    assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())
    with pytest.raises(ValueError, match="another configuration"):  # a bf16 run does not resume as fp32
        train_world_model(dataset, encoder(), tmp_path / "bf16", "toy", PCFG, tcfg(rollout_steps=2), progress=False)
    with pytest.raises(ValueError, match="precision must be one of"):
        TrainConfig(precision="fp16")


def test_interrupted_run_resumes_to_the_same_result(dataset, tmp_path):
    full = train_world_model(dataset, encoder(), tmp_path / "full", "toy", PCFG, tcfg(steps=60), progress=False)

    def interrupt(step, _):
        if step == 37:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_world_model(dataset, encoder(), tmp_path / "cut", "toy", PCFG, tcfg(steps=60), progress=False, on_step=interrupt)
    assert not (tmp_path / "cut" / "world_model.pt").exists()
    resumed = train_world_model(dataset, encoder(), tmp_path / "cut", "toy", PCFG, tcfg(steps=60), progress=False)
    untimed = lambda log: [{k: v for k, v in e.items() if k != "elapsed_s"} for e in log]  # noqa: E731
    assert untimed(resumed["log"]) == untimed(full["log"])
    # the wall time goes on from the last entry before the cut, not from zero
    elapsed = [e["elapsed_s"] for e in resumed["log"]]
    assert elapsed == sorted(elapsed) and resumed["train_seconds"] == elapsed[-1] > 0
    a = torch.load(tmp_path / "full" / "world_model.pt", weights_only=True)["predictor_state"]
    b = torch.load(tmp_path / "cut" / "world_model.pt", weights_only=True)["predictor_state"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_latent_mse_weights_the_proprio_features():
    pred, target = torch.randn(3, 2, 4, 10), torch.randn(3, 2, 4, 10)  # [B, T, N, D], proprio = last 2 of D
    assert torch.allclose(latent_mse(pred, target, 8), torch.nn.functional.mse_loss(pred, target))
    sq = (pred - target).square()
    manual = torch.cat([sq[..., :8], 5.0 * sq[..., 8:]], -1).mean()
    assert torch.allclose(latent_mse(pred, target, 8, proprio_weight=5.0), manual)
    with pytest.raises(ValueError):
        TrainConfig(proprio_weight=0.0)


def test_run_dir_with_other_config_is_refused(dataset, tmp_path):
    train_world_model(dataset, encoder(), tmp_path, "toy", PCFG, tcfg(steps=2), progress=False)
    with pytest.raises(ValueError, match="another configuration"):
        train_world_model(dataset, encoder(), tmp_path, "toy", PCFG, tcfg(steps=2), seed=1, progress=False)


def test_cli_predictor_overrides_replace_only_what_they_name():
    from argparse import ArgumentParser

    from wmplan.cli_commands import train as train_command
    from wmplan.predictor import PREDICTOR_CONFIGS

    parser = ArgumentParser()
    train_command.add_arguments(parser)
    base = ["--env", "pusht", "--data", "d", "--encoder", "e", "--out", "o"]
    assert train_command.predictor_config(parser.parse_args(base)) == PREDICTOR_CONFIGS["pusht"]
    cfg = train_command.predictor_config(parser.parse_args([*base, "--width", "128", "--depth", "3"]))
    assert (cfg.width, cfg.depth, cfg.history) == (128, 3, PREDICTOR_CONFIGS["pusht"].history)
    with pytest.raises(ValueError, match="divisible by num_heads"):
        train_command.predictor_config(parser.parse_args([*base, "--width", "66"]))


def test_cli_pretrain_then_train_end_to_end(dataset, tmp_path, capsys):
    from wmplan.cli import main

    enc = tmp_path / "enc.pt"
    assert main(["pretrain-encoder", "--data", str(dataset.root), "--out", str(enc), "--arch", "vit-micro-32",
                 "--steps", "3", "--batch-size", "8", "--quiet", "--set", "local_crops=1",
                 "--set", "global_scale=0.85,1.0"]) == 0
    saved = torch.load(enc, weights_only=True)
    assert saved["dino_config"]["local_crops"] == 1 and tuple(saved["dino_config"]["global_scale"]) == (0.85, 1.0)
    assert not enc.with_name("enc.pt.state").exists()  # the resumable state goes once the encoder is written
    for pair, message in [("bogus=1", "KEY one of"), ("lr=fast", "lr takes float")]:  # usage errors, as argparse's
        with pytest.raises(SystemExit) as stop:
            main(["pretrain-encoder", "--data", str(dataset.root), "--out", str(enc), "--set", pair])
        err = capsys.readouterr().err
        assert stop.value.code == 2 and f"wmplan pretrain-encoder: error: argument --set: '{pair}': " in err
        assert message in err
    args = ["train", "--env", "toy", "--data", str(dataset.root), "--encoder", str(enc), "--out", str(tmp_path / "run"),
            "--steps", "4", "--batch-size", "8", "--val-every", "2", "--history", "2", "--frameskip", "2", "--quiet"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["tokens_per_frame"] == 4 and set(out["probe_r2"]) == {"agent_x", "agent_y"}
    assert main([*args, "--pool-grid", "0", "--out", str(tmp_path / "every_patch")]) == 0  # 4x4 patches, unpooled
    printed = capsys.readouterr().out
    assert json.loads(printed[printed.index("{"):])["tokens_per_frame"] == 16
    WorldModel.load(tmp_path / "run" / "world_model.pt", env="toy", image_size=SIZE, action_dim=2)
    graph_args = ["route-graph", "--data", str(dataset.root), "--checkpoint", str(tmp_path / "run" / "world_model.pt"),
                  "--out", str(tmp_path / "graph.pt"), "--nodes", "12", "--stride", "2", "--quiet"]
    assert main(graph_args) == 0 and "route graph: 12 nodes" in capsys.readouterr().out
    from wmplan.route import RouteGraph

    graph = RouteGraph.load(tmp_path / "graph.pt")
    assert graph.nodes.shape == (12, 2) and graph.adjacency.any() and graph.meta["episodes"] == 6
    assert main([*graph_args[:2], str(tmp_path / "nowhere"), *graph_args[3:]]) == 2  # missing dataset: one line
    assert main(["train", "--env", "pusht", *args[3:]]) == 2  # wrong env: one-line error
    assert "collected in 'toy'" in capsys.readouterr().err
    assert main([*args[:5], "--encoder", str(tmp_path / "nope.pt"), *args[7:]]) == 2


def test_cli_bad_paths_and_mismatched_envs_are_one_line_errors(dataset, tmp_path, capsys, tiny_pusht_checkpoint):
    from wmplan.cli import main

    enc, a_file, empty = save_encoder(encoder(), tmp_path / "enc.pt"), tmp_path / "a_file", tmp_path / "empty.pt"
    a_file.write_text("x"), empty.write_bytes(b"")
    base = {"--env": "toy", "--data": str(dataset.root), "--encoder": str(enc), "--out": str(tmp_path / "run")}
    cases = [("--out", a_file, "run directory .*a_file is a file; --out must be a directory"),
             ("--out", a_file / "run", "cannot create run directory .*--out must be a directory path"),
             ("--data", a_file, "a_file is a file, expected a dataset directory"),
             ("--encoder", tmp_path, "is a directory, expected a checkpoint file"),
             ("--encoder", empty, r"empty.pt is not a readable checkpoint \(EOFError\)")]
    for flag, value, message in cases:
        args = base | {flag: str(value)}
        assert main(["train", *[x for kv in args.items() for x in kv], "--steps", "2", "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("wmplan train: error: ") and err.count("\n") == 1 and re.search(message, err), err
    # a graph of the toy dataset read by a push-T probe would be nonsense
    assert main(["route-graph", "--data", str(dataset.root), "--checkpoint", str(tiny_pusht_checkpoint),
                 "--out", str(tmp_path / "graph.pt"), "--quiet"]) == 2
    assert "collected in 'toy', the checkpoint trained on 'pusht'" in capsys.readouterr().err
    assert not (tmp_path / "graph.pt").exists()


def test_cli_train_takes_the_env_by_gymnasium_id_as_collect_and_bench_do(dataset, tmp_path, capsys):
    from argparse import ArgumentParser

    from wmplan.cli import main
    from wmplan.cli_commands import train as train_command
    from wmplan.predictor import PREDICTOR_CONFIGS

    parser = ArgumentParser()
    train_command.add_arguments(parser)
    by_id = parser.parse_args(["--env", "wmplan/PushT-v0", "--data", "d", "--encoder", "e", "--out", "o"])
    assert train_command.predictor_config(by_id) == PREDICTOR_CONFIGS["pusht"]
    maze = tmp_path / "maze"
    shutil.copytree(dataset.root, maze)
    (maze / "meta.json").write_text(json.dumps(json.loads((maze / "meta.json").read_text()) | {"env": "maze"}))
    enc = save_encoder(encoder(), tmp_path / "enc.pt")
    assert main(["train", "--env", "wmplan/Maze-v0", "--data", str(maze), "--encoder", str(enc), "--out",
                 str(tmp_path / "run"), "--steps", "2", "--batch-size", "4", "--val-every", "2", "--history", "2",
                 "--frameskip", "2", "--quiet"]) == 0
    assert WorldModel.load(tmp_path / "run" / "world_model.pt").env == "maze"  # recorded by its short name


def test_training_can_fit_an_attentive_probe_that_the_checkpoint_keeps(dataset, tmp_path):
    probe = ProbeConfig(hidden=16, attentive=True, steps=300, lr=3e-3, batch_size=64)
    metrics = train_world_model(dataset, encoder(), tmp_path, "toy", PCFG, tcfg(steps=30, probe=probe), progress=False)
    assert metrics["probe_r2"]["agent_x"] > 0.8 and metrics["probe_r2"]["agent_y"] > 0.8
    wm = WorldModel.load(tmp_path / "world_model.pt", env="toy", image_size=SIZE, action_dim=2)
    assert wm.probe.attentive and wm.probe.names == ["agent_x", "agent_y"]
    z = wm.encode(dataset.episode(0)["pixels"][:3], dataset.episode(0)["proprio"][:3])  # [3, N, D]
    with torch.no_grad():
        assert wm.probe(z).shape == (3, 2) and torch.isfinite(wm.probe(z)).all()


def test_train_signature_leaves_out_later_options_while_unset_so_older_runs_resume():
    from dataclasses import asdict
    from wmplan.train import _run_signature

    pcfg, tcfg = PredictorConfig(), TrainConfig()
    probe = _run_signature("pusht", pcfg, tcfg, 0, "h")["train"]["probe"]
    assert probe == {k: v for k, v in asdict(ProbeConfig()).items() if k not in ("attentive", "batch_size")}
    attentive = TrainConfig(probe=ProbeConfig(hidden=64, attentive=True, batch_size=128))
    probe = _run_signature("pusht", pcfg, attentive, 0, "h")["train"]["probe"]
    assert probe["attentive"] is True and probe["batch_size"] == 128  # a set option still tells runs apart
    predictor = _run_signature("pusht", pcfg, tcfg, 0, "h")["predictor"]
    assert predictor == {k: v for k, v in asdict(pcfg).items() if k != "token_mlp"}
    assert _run_signature("pusht", PredictorConfig(token_mlp=32), tcfg, 0, "h")["predictor"]["token_mlp"] == 32


def test_readout_loss_is_the_weighted_probe_disagreement_and_training_lowers_it(dataset, tmp_path):
    from wmplan.train import window_loss

    metrics = train_world_model(dataset, encoder(), tmp_path, "toy", PCFG, tcfg(steps=100, readout_weight=0.5),
                                progress=False)
    log = metrics["log"]
    assert "readout" in log[-1] and log[-1]["val_readout"] < log[0]["val_readout"]
    wm = WorldModel.load(tmp_path / "world_model.pt", env="toy", image_size=SIZE, action_dim=2)
    assert metrics["probe_r2"]["agent_x"] > 0.8  # the frozen probe of the loss is the checkpoint's probe
    ep = dataset.episode(0)
    z = wm.encode(ep["pixels"][:6:2], ep["proprio"][:6:2])[None]  # [1, 3, N, D]: history 2 + 1 target frame
    a = torch.as_tensor(ep["actions"][:4], dtype=torch.float32).reshape(1, 2, 4)  # frameskip 2: [1, 2, 2*A]
    with torch.no_grad():
        plain, _ = window_loss(wm, z, a, tcfg(rollout_steps=1))
        weighted, parts = window_loss(wm, z, a, tcfg(rollout_steps=1, readout_weight=0.5), wm.probe)
        pred = torch.cat([wm.predictor(z[:, :2], a), wm.rollout(z[:, :2], a[:, 1:2], a[:, :1])], dim=1)
        target = torch.cat([z[:, 1:3], z[:, 2:3]], dim=1)
        by_hand = ((wm.probe(pred) - wm.probe(target)) / wm.probe.out_std).pow(2).mean()
    assert parts["readout"] == pytest.approx(float(by_hand), rel=1e-5)
    assert float(weighted - plain) == pytest.approx(0.5 * parts["readout"], rel=1e-4)


def test_training_starts_from_an_initial_predictor_and_refuses_one_that_does_not_fit(dataset, tmp_path):
    from wmplan.checkpoint import CheckpointError

    trained = train_world_model(dataset, encoder(), tmp_path / "a", "toy", PCFG, tcfg(steps=100), progress=False)
    init = WorldModel.load(tmp_path / "a" / "world_model.pt", env="toy", image_size=SIZE, action_dim=2).predictor.state_dict()
    cold = train_world_model(dataset, encoder(), tmp_path / "b", "toy", PCFG, tcfg(steps=1, lr=1e-9), progress=False)
    warm = train_world_model(dataset, encoder(), tmp_path / "c", "toy", PCFG, tcfg(steps=1, lr=1e-9), progress=False,
                             init=init)
    val = lambda m: m["log"][-1]["val_teacher_forced"]  # noqa: E731
    assert val(warm) == pytest.approx(val(trained), rel=1e-3) and val(warm) < val(cold) / 5
    wider = PredictorConfig(history=2, frameskip=2, width=48, depth=2, num_heads=2)
    with pytest.raises(CheckpointError, match="does not fit"):
        train_world_model(dataset, encoder(), tmp_path / "d", "toy", wider, tcfg(steps=1), progress=False, init=init)


def test_probe_frames_are_those_of_a_permutation_of_the_concatenation_without_building_it():
    from wmplan.train import sample_latent_frames

    rng = np.random.default_rng(0)
    z_eps = [torch.randn(int(n), 3, 2) for n in rng.integers(1, 20, size=12)]
    states = [rng.normal(size=(len(z), 4)) for z in z_eps]
    ids = np.array([3, 0, 7, 5, 11])
    z, s = sample_latent_frames(z_eps, states, ids, limit=25, seed=1)
    everything = torch.cat([z_eps[i] for i in ids])
    keep = np.random.default_rng(1).permutation(len(everything))[:25]
    assert torch.equal(z, everything[keep])
    assert np.array_equal(s, np.concatenate([states[i] for i in ids])[keep])
