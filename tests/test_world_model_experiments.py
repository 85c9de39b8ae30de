"""The experiments' measurements of world models: encoder probes, action use, prediction errors, readout
capacity and paired predictor comparisons (`experiments/encoder_probes.py`, `eval_world_model.py`,
`readout_capacity.py`, `compare_predictors.py`) on tiny models and datasets."""

import json

import numpy as np
import pytest
import torch

from conftest import random_pusht_dataset
from test_world_model import FS, A, P, tiny_world_model
from wmplan.encoders import ViTConfig, ViTEncoder
from wmplan.encoders.vit import pixels_to_tensor
from wmplan.probe import Probe


def test_encoder_probe_picks_each_targets_penalty_on_training_frames():
    from experiments.encoder_probes import RIDGES, probe_r2
    from wmplan.probe import ridge_path_r2

    encoder = ViTEncoder(ViTConfig(image_size=32, patch_size=8, embed_dim=16, depth=1, num_heads=2, pool_grid=2), seed=0)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(120, 32, 32, 3), dtype=np.uint8)
    with torch.no_grad():
        z = encoder.encode_pixels(frames)  # [120, 4, 16]
    y = np.stack([z[:, 0, 0].numpy(), rng.normal(size=120)], axis=1).astype(np.float32)  # readable, noise
    names = ["feature", "noise"]
    yt = torch.as_tensor(y)
    result = probe_r2(z[:80], yt[:80], z[80:], yt[80:], names)
    inner = ridge_path_r2(z[:64], y[:64], z[64:80], y[64:80], names, RIDGES)
    assert result["ridge"] == {n: max(RIDGES, key=lambda r: inner[r][n]) for n in names}
    assert result["feature"] > 0.9 and result["noise"] < 0.2


def test_the_class_token_probe_reads_the_class_token_beside_the_patch_tokens():
    from experiments import encoder_probes
    from experiments.encoder_probes import _encode_with_cls, cls_probe

    encoder = ViTEncoder(ViTConfig(image_size=32, patch_size=8, embed_dim=16, depth=1, num_heads=2, pool_grid=2), seed=0)
    frames = np.random.default_rng(0).integers(0, 256, size=(120, 32, 32, 3), dtype=np.uint8)
    z = _encode_with_cls(encoder, frames)  # [120, 1 + 4, 16]
    with torch.no_grad():
        tokens = encoder.forward_tokens(pixels_to_tensor(frames, 32))
    assert z.shape == (120, 5, 16)
    torch.testing.assert_close(z[:, 0], tokens[:, 0])
    torch.testing.assert_close(z[:, 1:], encoder.encode_pixels(frames))
    # a feature of the class token is read exactly
    y = np.repeat(z[:, 0, :1].numpy(), len(encoder_probes.TARGETS), axis=1)
    r2 = cls_probe(encoder, (frames[:80], y[:80]), (frames[80:], y[80:]))
    assert min(r2[name] for name in encoder_probes.TARGETS) > 0.9


def test_encoder_probes_without_an_attentive_config_fit_the_linear_probe_only():
    from experiments.encoder_probes import TARGETS, encoder_probes, probe_r2

    encoder = ViTEncoder(ViTConfig(image_size=32, patch_size=8, embed_dim=16, depth=1, num_heads=2, pool_grid=2),
                         seed=0).freeze()
    frames = np.random.default_rng(0).integers(0, 256, size=(100, 32, 32, 3), dtype=np.uint8)
    with torch.no_grad():
        z = encoder.encode_pixels(frames)  # [100, 4, 16]
    y = np.stack([z[:, i % 4, i].numpy() for i in range(len(TARGETS))], axis=1)  # each target one token feature
    scores, probe = encoder_probes(encoder, (frames[:80], y[:80]), (frames[80:], y[80:]), TARGETS, attentive=None)
    assert probe is None and list(scores) == ["linear"]
    yt = torch.as_tensor(y)
    assert scores["linear"] == probe_r2(z[:80], yt[:80], z[80:], yt[80:], TARGETS)
    assert min(scores["linear"][name] for name in TARGETS) > 0.9


def test_the_dinov2_evaluation_features_are_the_last_blocks_class_tokens_and_the_patch_average():
    from experiments.encoder_probes import _encode_with_cls

    encoder = ViTEncoder(ViTConfig(image_size=32, patch_size=8, embed_dim=16, depth=3, num_heads=2, pool_grid=2,
                                   num_register_tokens=1), seed=0)
    frames = np.random.default_rng(0).integers(0, 256, size=(6, 32, 32, 3), dtype=np.uint8)
    z = _encode_with_cls(encoder, frames, blocks=2, avgpool=True)  # [6, 2 + 1 + 4, 16]
    x = pixels_to_tensor(frames, 32)
    with torch.no_grad():
        last = encoder.forward_tokens(x)  # [6, 1 + 1 + 16, 16]
        block = encoder._embed(x)
        for b in encoder.blocks[:2]:
            block = b(block)
        second_last = encoder.norm(block)
    assert z.shape == (6, 7, 16)
    torch.testing.assert_close(z[:, 0], last[:, 0])
    torch.testing.assert_close(z[:, 1], second_last[:, 0])
    torch.testing.assert_close(z[:, 2], last[:, 2:].mean(1))  # the patches' average, registers left out
    torch.testing.assert_close(z[:, 3:], encoder.encode_pixels(frames))
    dense = _encode_with_cls(encoder, frames, blocks=2, avgpool=True, dense=True)  # [6, 2 + 1 + 4 + 4, 16]
    assert dense.shape == (6, 11, 16)
    torch.testing.assert_close(dense[:, :7], z)
    torch.testing.assert_close(dense[:, 7:], encoder.pool_patches(second_last, 4, 4))  # the earlier block, pooled 2x2
    assert not torch.allclose(dense[:, 7:], dense[:, 3:7])


def test_action_use_tells_a_predictor_that_reads_its_actions_from_one_that_ignores_them():
    from experiments.eval_world_model import action_use

    g = torch.Generator().manual_seed(0)
    B, T, N, D, Dv = 64, 2, 6, 5, 4
    z = torch.randn(B, T, N, D, generator=g)
    actions = torch.randn(B, T, D, generator=g)
    target = z[:, -1] + actions[:, -1, None, :]  # the last action shifts every token
    target[:, 2:, :Dv] = z[:, -1, 2:, :Dv]  # ... but only tokens 0 and 1 of the visual features change
    reads = lambda z, a: z[:, -1] + a[:, -1, None, :]
    ignores = lambda z, a: z[:, -1] + actions[:, -1].mean(0)

    used = action_use(reads, z, actions, target, Dv, changed=2)
    assert used["visual_changed"]["predicted"] < 1e-9 < used["visual_changed"]["shuffled_actions"]
    assert used["proprio"]["predicted"] < 1e-9 < used["proprio"]["copy_last"]
    assert used["visual_other"]["copy_last"] == 0.0
    ignored = action_use(ignores, z, actions, target, Dv, changed=2)
    assert ignored["visual_changed"]["predicted"] == ignored["visual_changed"]["shuffled_actions"] > 0.5
    one_token = action_use(reads, z[:, :, :1], actions, target[:, :1], Dv, changed=4)  # a projected latent
    assert "visual_other" not in one_token and one_token["visual_changed"]["predicted"] < 1e-9


def test_prediction_errors_reports_each_horizon_in_env_steps(tmp_path):
    from experiments.eval_world_model import prediction_errors
    from wmplan.data import EpisodeDataset
    from wmplan.data.dataset import episode_path, write_episode, write_meta

    names = ["agent_x", "agent_y", "block_x", "block_y", "block_theta"]
    write_meta(tmp_path, {"env": "pusht", "env_kwargs": {}, "image_size": 32, "action_dim": A, "proprio_dim": P,
                          "state_dim": 5, "state_names": names})
    rng = np.random.default_rng(0)
    for e in range(2):  # the agent wanders, the block stays at (200, 300) mm, 0.5 rad
        states = np.c_[rng.uniform(100, 400, (31, 2)), np.tile([200.0, 300.0, 0.5], (31, 1))]
        arrays = {"pixels": rng.integers(0, 256, (31, 32, 32, 3), dtype=np.uint8),
                  "proprio": rng.normal(size=(31, P)).astype(np.float32),
                  "actions": rng.uniform(-1, 1, (30, A)).astype(np.float32), "states": states}
        write_episode(episode_path(tmp_path, e), arrays, {"seed": e, "steps": 30})
    wm = tiny_world_model()
    wm.probe = Probe(4, 16 + P, ["block_x", "block_y", "sin(block_theta)", "cos(block_theta)"], seed=0)

    out = prediction_errors(wm, EpisodeDataset(tmp_path), np.arange(2), horizons=(1, 3), max_windows=8)
    assert set(out) == {"1_steps", "3_steps"}
    assert [out[k]["env_steps"] for k in out] == [FS, 3 * FS]
    assert out["3_steps"]["windows"] == 8
    # the block never moves, so its last real state is exactly right; the random probe is not
    assert out["3_steps"]["no_change_true_state"] == {"block_pos_mm_median": 0.0, "block_angle_deg_median": 0.0}
    assert out["3_steps"]["block_pos_mm_median"] > 100


def test_the_readout_capacity_experiment_compares_the_checkpoint_probe_with_a_stronger_one(tmp_path):
    from experiments.encoder_probes import TARGETS
    from experiments.readout_capacity import main

    random_pusht_dataset(tmp_path / "data", episodes=10, steps=30)
    wm = tiny_world_model()
    wm.save(tmp_path / "agent_only.pt")
    args = ["--data", str(tmp_path / "data"), "--frames", "100", "--hidden", "8", "--steps", "3", "--out", str(tmp_path / "r.json")]
    with pytest.raises(SystemExit):  # its probe reads the agent only
        main([*args, "--checkpoint", str(tmp_path / "agent_only.pt")])
    wm.probe = Probe(4, 16 + P, TARGETS, seed=0)
    wm.save(tmp_path / "wm.pt")

    assert main([*args, "--checkpoint", str(tmp_path / "wm.pt")]) == 0
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["stronger_probe"]["train_frames"] == 100 and result["stronger_probe"]["config"]["hidden"] == 8
    for probe in ("checkpoint_probe", "stronger_probe"):  # one held-out episode of 31 frames, windows of 12 frames
        assert result[probe]["real_latents"]["frames"] == 31
        assert set(result[probe]["predicted"]) == {"1_steps", "5_steps", "10_steps"}
    assert result["checkpoint_probe"]["real_latents"] != result["stronger_probe"]["real_latents"]


def test_the_encoder_probe_command_fits_linear_probes_on_the_frames_it_is_told(tmp_path):
    from experiments.encoder_probes import TARGETS
    from experiments.eval_world_model import main
    from wmplan.encoders import save_encoder

    random_pusht_dataset(tmp_path / "data", episodes=10, steps=12)
    encoder = ViTEncoder(ViTConfig(image_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2, pool_grid=2), seed=0)
    save_encoder(encoder, tmp_path / "enc.pt")

    assert main(["--data", str(tmp_path / "data"), "--encoder", str(tmp_path / "enc.pt"), "--attentive-steps", "0",
                 "--dinov2-dense", "--frames-per-episode", "6", "--val-frames-per-episode", "0",
                 "--out", str(tmp_path / "probe.json")]) == 0
    result = json.loads((tmp_path / "probe.json").read_text())
    assert "attentive_probe" not in result
    for key in ("encoder_probe_r2", "encoder_probe_r2_dinov2_dense"):  # 9 training episodes x 6 frames, 1 held out x 13
        assert (result[key]["train_frames"], result[key]["val_frames"]) == (54, 13)
        assert set(result[key]["pretrained"]) == set(result[key]["random_init"]) == {*TARGETS, "ridge"}
    assert result["encoder_probe_r2_dinov2_dense"]["class_token_blocks"] == 2


def test_predictors_are_compared_on_the_same_windows_by_one_shared_probe(tmp_path):
    from experiments.compare_predictors import main, paired_median_difference

    random_pusht_dataset(tmp_path / "data", episodes=10, steps=30)
    base, other = tiny_world_model(seed=0), tiny_world_model(seed=1)
    other.encoder.load_state_dict(base.encoder.state_dict())  # the same encoder, another predictor
    for name, wm in (("base", base), ("other", other), ("other_encoder", tiny_world_model(seed=2)),
                     ("history3", tiny_world_model(history=3))):
        wm.save(tmp_path / f"{name}.pt")
    ckpt = lambda *names: ["--checkpoints", *[str(tmp_path / f"{n}.pt") for n in names]]
    args = ["--data", str(tmp_path / "data"), "--frames", "100", "--hidden", "8", "--steps", "3", "--out", str(tmp_path / "c.json")]

    assert main([*args, *ckpt("base", "other", "base")]) == 0
    result = json.loads((tmp_path / "c.json").read_text())
    first, second, again = result["models"]
    assert result["windows"] > 0 and result["shared_probe"]["train_frames"] == 100 and "vs_first" not in first["5_steps"]
    for h in ("1_steps", "5_steps", "10_steps"):
        assert again[h]["vs_first"]["block_pos_mm"] == {"difference": 0.0, "ci95": [0.0, 0.0]}  # itself, paired
        pos = second[h]["vs_first"]["block_pos_mm"]
        assert pos["difference"] == pytest.approx(second[h]["block_pos_mm_median"] - first[h]["block_pos_mm_median"], abs=0.011)
        assert pos["ci95"][0] <= pos["difference"] <= pos["ci95"][1]
    assert second["5_steps"] != first["5_steps"]  # another predictor predicts otherwise

    for bad in (("base", "other_encoder"), ("base", "history3")):
        with pytest.raises(SystemExit):
            main([*args, *ckpt(*bad)])
    shifted = paired_median_difference(np.arange(50.0) + 1.5, np.arange(50.0))
    assert shifted == {"difference": 1.5, "ci95": [1.5, 1.5]}
