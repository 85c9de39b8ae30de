"""WorldModel: encode/predict/rollout semantics, batching, gradients, checkpoints."""

import numpy as np
import pytest
import torch

from wmplan.checkpoint import CheckpointError
from wmplan.encoders import ViTConfig, ViTEncoder
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
