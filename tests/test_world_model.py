"""WorldModel: encode/predict/rollout semantics, batching, gradients, checkpoints."""

import json

import numpy as np
import pytest
import torch

from conftest import random_pusht_dataset
from wmplan.checkpoint import CheckpointError
from wmplan.encoders import ViTConfig, ViTEncoder
from wmplan.encoders.vit import pixels_to_tensor
from wmplan.predictor import Predictor, PredictorConfig
from wmplan.probe import Probe
from wmplan.world_model import WorldModel

A, P, FS = 2, 3, 2


def tiny_world_model(history=2, conditioning="concat", seed=0):
    enc = ViTEncoder(ViTConfig(image_size=32, patch_size=8, embed_dim=16, depth=1, num_heads=2, pool_grid=2), seed=seed)
    cfg = PredictorConfig(history=history, frameskip=FS, width=16, depth=2, num_heads=2, conditioning=conditioning)
    pred = Predictor(cfg, num_tokens=4, latent_dim=16 + P, action_dim=A, proprio_dim=P, seed=seed)
    probe = Probe(4, 16 + P, ["agent_x", "agent_y"], seed=seed)
    return WorldModel(enc, pred, "pusht", 32, A, np.zeros(P), np.full(P, 2.0), probe=probe).eval()


def observations(B=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (B, 32, 32, 3), dtype=np.uint8), rng.normal(size=(B, P)).astype(np.float32)


def test_encode_carries_proprio_and_attributes():
    wm = tiny_world_model()
    pixels, proprio = observations()
    z = wm.encode(pixels, proprio)
    assert z.shape == (3, *wm.latent_shape) == (3, 4, 19)
    assert wm.visual_dim == 16 and wm.frameskip == FS and wm.action_dim == A and wm.history == 2
    assert wm.flops_per_step() == wm.predictor.flops_per_step() > 0  # what MPC records and benchmarks count
    torch.testing.assert_close(z[:, 2, 16:], torch.as_tensor(proprio) / 2.0)
    torch.testing.assert_close(wm.proprio_of(z), torch.as_tensor(proprio))
    with pytest.raises(ValueError, match="proprio"):
        wm.encode(pixels)
    with pytest.raises(ValueError, match="32x32"):
        wm.encode(np.zeros((1, 64, 64, 3), np.uint8), proprio[:1])


def rollout_inputs(B=5, T=3, H=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(B, T, 4, 19, generator=g)
    return z, torch.rand(B, H, FS * A, generator=g) * 2 - 1, torch.rand(B, T - 1, FS * A, generator=g) * 2 - 1


@pytest.mark.parametrize("conditioning", ["concat", "adaln"])
def test_batched_rollout_equals_per_candidate(conditioning):
    wm = tiny_world_model(conditioning=conditioning)
    z, actions, a_past = rollout_inputs()
    with torch.inference_mode():
        batched = wm.rollout(z, actions, a_past)
        single = torch.cat([wm.rollout(z[i : i + 1], actions[i : i + 1], a_past[i : i + 1]) for i in range(5)])
    assert batched.shape == (5, 4, 4, 19)
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-5)


def test_rollout_is_autoregressive_predict_with_sliding_window():
    wm = tiny_world_model(history=2)
    z, actions, a_past = rollout_inputs(T=3, H=3)
    out = wm.rollout(z, actions, a_past)
    z1 = wm.predict(z[:, 1:], torch.cat([a_past[:, 1:], actions[:, :1]], 1))
    z2 = wm.predict(torch.stack([z[:, 2], z1], 1), actions[:, :2])
    z3 = wm.predict(torch.stack([z1, z2], 1), actions[:, 1:3])
    torch.testing.assert_close(out, torch.stack([z1, z2, z3], 1))
    # a single observed frame: the window grows from 1 frame, no past actions needed
    assert wm.rollout(z[:, -1:], actions).shape == (5, 3, 4, 19)


@pytest.mark.parametrize("conditioning", ["concat", "adaln"])
def test_candidates_sharing_a_history_equal_the_expanded_history(conditioning):
    wm = tiny_world_model(conditioning=conditioning)
    z, actions, a_past = rollout_inputs(B=2, T=2)  # actions [2, H, A_fs]
    cands = torch.stack([actions, -actions, 0.5 * actions], dim=1)  # [B=2, S=3, H, A_fs]
    with torch.inference_mode():
        shared = wm.rollout(z, cands, a_past)  # [2, 3, H, N, D]
        rows = lambda t: t.repeat_interleave(3, 0)  # noqa: E731  one history copy per candidate
        expanded = wm.rollout(rows(z), cands.reshape(6, *actions.shape[1:]), rows(a_past))
    torch.testing.assert_close(shared.reshape(expanded.shape), expanded, atol=1e-5, rtol=1e-5)


def test_latent_objective_shares_the_history_and_matches_the_expanded_path():
    from wmplan.costs import CostSum, GoalEnergy
    from wmplan.mpc import LatentObjective

    class Plain:  # the same model without candidate sharing: LatentObjective expands the history
        def __init__(self, wm):
            self.rollout = wm.rollout

    wm = tiny_world_model()
    z, actions, a_past = rollout_inputs(B=2, T=2)
    cands = torch.stack([actions, -actions], dim=1)  # [2, 2, H, A_fs]
    costs = CostSum([GoalEnergy(steps="all")])
    with torch.inference_mode():
        shared = LatentObjective(wm, costs, z, z[:, -1], a_past)(cands).total
        plain = LatentObjective(Plain(wm), costs, z, z[:, -1], a_past)(cands).total
    torch.testing.assert_close(shared, plain, atol=1e-6, rtol=1e-5)


def test_rollout_differentiable_wrt_actions():
    wm = tiny_world_model()
    z, actions, a_past = rollout_inputs()
    actions.requires_grad_(True)
    wm.rollout(z, actions, a_past)[:, -1].pow(2).sum().backward()
    assert actions.grad is not None and actions.grad.abs().sum() > 0
    assert all(p.grad is None for p in wm.encoder.parameters())


def test_probe_reads_latents_differentiably():
    wm = tiny_world_model()
    z, _, _ = rollout_inputs()
    out = wm.probe.read(z)
    assert set(out) == {"agent_x", "agent_y"} and out["agent_x"].shape == (5, 3)


def test_ridge_path_scores_each_penalty_as_a_separate_fit_does():
    from wmplan.probe import ProbeConfig, fit_probe, ridge_path_r2

    g = torch.Generator().manual_seed(0)
    z = torch.randn(300, 4, 6, generator=g)
    y = torch.stack([z[:, 0, 0] - 2 * z[:, 3, 5], z[:, 1].sum(-1)], dim=1) + 0.3 * torch.randn(300, 2, generator=g)
    names = ["a", "b"]
    path = ridge_path_r2(z[:200], y[:200], z[200:], y[200:], names, (1e-3, 1.0, 100.0))
    for ridge, scores in path.items():
        _, alone = fit_probe(z[:200], y[:200], z[200:], y[200:], names, ProbeConfig(ridge=ridge))
        assert scores == pytest.approx(alone, abs=1e-6)
    assert path[1e-3]["a"] > 0.8 > path[100.0]["a"]  # a heavy penalty shrinks the readout toward the mean


def test_ridge_selection_forms_the_normal_equations_once_and_matches_the_two_separate_fits():
    from wmplan.probe import ridge_path_r2, ridge_select_r2

    g = torch.Generator().manual_seed(1)
    z = 3.0 + 2.0 * torch.randn(500, 3, 5, generator=g)  # far from standardised, so the refit's statistics differ
    y = torch.stack([z[:, 0, 0] - z[:, 2, 4], 0.1 * z[:, 1, 1]], 1) + torch.randn(500, 2, generator=g) * torch.tensor([4.0, 0.2])
    names, ridges = ["a", "b"], (1e-4, 1e-1, 1.0, 30.0)
    scores, best = ridge_select_r2(z[:400], y[:400], z[400:], y[400:], names, ridges, select_fraction=0.25)
    inner = ridge_path_r2(z[:300], y[:300], z[300:400], y[300:400], names, ridges)
    assert best == {n: max(ridges, key=lambda r: inner[r][n]) for n in names}
    refit = ridge_path_r2(z[:400], y[:400], z[400:], y[400:], names, sorted(set(best.values())))
    assert scores == pytest.approx({n: refit[best[n]][n] for n in names}, abs=1e-6)
    with pytest.raises(ValueError, match="select_fraction"):
        ridge_select_r2(z[:4], y[:4], z[4:], y[4:], names, ridges, select_fraction=0.0)


def test_attentive_probe_reads_a_relation_between_tokens_that_a_linear_probe_cannot():
    from wmplan.probe import Probe, ProbeConfig, fit_probe

    g = torch.Generator().manual_seed(0)
    z = torch.randn(800, 6, 4, generator=g)
    y = (z[:, 1, 0] * z[:, 4, 2])[:, None]  # a product of two tokens' features: no linear readout has it
    split = lambda t: (t[:600], t[600:])
    (zt, zv), (yt, yv) = split(z), split(y)
    _, linear = fit_probe(zt, yt, zv, yv, ["p"], ProbeConfig(ridge=1e-3))
    config = ProbeConfig(hidden=32, attentive=True, steps=800, lr=3e-3, batch_size=128)
    probe, attentive = fit_probe(zt, yt, zv, yv, ["p"], config, seed=1)
    assert linear["p"] < 0.1 and attentive["p"] > 0.8, (linear, attentive)
    again = Probe.from_dict(probe.to_dict())
    with torch.no_grad():
        assert torch.equal(again(zv), probe(zv)) and probe(zv[:2][None]).shape == (1, 2, 1)  # leading dims kept
    for hidden in (0, 30):  # none, or one the attention heads cannot split
        with pytest.raises(ValueError, match="hidden width"):
            ProbeConfig(hidden=hidden, attentive=True)


def test_save_load_roundtrip(tmp_path):
    wm = tiny_world_model()
    wm.save(tmp_path / "wm.pt")
    torch.load(tmp_path / "wm.pt", weights_only=True)  # plain dicts and tensors only
    loaded = WorldModel.load(tmp_path / "wm.pt", env="pusht", image_size=32, action_dim=A)
    z, actions, a_past = rollout_inputs()
    with torch.no_grad():
        assert torch.equal(loaded.rollout(z, actions, a_past), wm.rollout(z, actions, a_past))
        pixels, proprio = observations()
        assert torch.equal(loaded.encode(pixels, proprio), wm.encode(pixels, proprio))
        assert torch.equal(loaded.probe(z), wm.probe(z))


def test_wrong_setup_and_corrupt_files_are_refused(tmp_path):
    tiny_world_model().save(tmp_path / "wm.pt")
    with pytest.raises(CheckpointError, match=r"env='pusht' \(expected 'maze'\)"):
        WorldModel.load(tmp_path / "wm.pt", env="maze")
    with pytest.raises(CheckpointError, match="image_size=32 \\(expected 64\\).*action_dim=2 \\(expected 3\\)"):
        WorldModel.load(tmp_path / "wm.pt", image_size=64, action_dim=3)
    data = (tmp_path / "wm.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        WorldModel.load(tmp_path / "cut.pt")
    with pytest.raises(FileNotFoundError):
        WorldModel.load(tmp_path / "missing.pt")
    torch.save({"kind": "wmplan-encoder"}, tmp_path / "enc.pt")
    with pytest.raises(CheckpointError, match="expected 'wmplan-world-model'"):
        WorldModel.load(tmp_path / "enc.pt")


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


def test_atomic_checkpoint_writes_get_an_ordinary_file_mode_and_leave_no_temporary(tmp_path):
    import os
    import stat

    from wmplan.checkpoint import load_checkpoint, save_atomic

    old = os.umask(0o022)
    try:
        path = save_atomic({"kind": "x", "w": torch.ones(2)}, tmp_path / "sub" / "c.pt")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # readable by others, as `torch.save` to a path would make it
    assert [f.name for f in path.parent.iterdir()] == ["c.pt"]
    assert torch.equal(load_checkpoint(path, kind="x")["w"], torch.ones(2))


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
