"""The frozen PCA projection of patch tokens: what it computes, how it is stored, cached and trained on."""

import json

import numpy as np
import pytest
import torch

from tests.test_train import PCFG, SIZE, encoder, make_dataset, tcfg
from wmplan.checkpoint import CheckpointError
from wmplan.encoders import encoder_hash, load_encoder, save_encoder
from wmplan.encoders.features import cache_features, cache_path, load_features
from wmplan.encoders.projection import fit_projection, project_cache, projection_from_tokens
from wmplan.train import train_world_model
from wmplan.world_model import WorldModel


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    torch.set_num_threads(1)
    return make_dataset(tmp_path_factory.mktemp("toy_projection"))


@pytest.fixture(scope="module")
def fitted(dataset):
    train_ids, _ = dataset.split(0.34, 0)
    return fit_projection(encoder(), dataset, 8, train_ids, progress=False)


def test_projection_is_the_top_principal_components_of_the_training_frames(dataset, fitted):
    projected, info = fitted
    train_ids, _ = dataset.split(0.34, 0)
    x = np.concatenate([f.reshape(len(f), -1) for f in load_features(cache_path(dataset.root, encoder()), encoder(), train_ids)])
    assert info["frames"] == len(x) and info["episodes"] == len(train_ids)
    # the exact PCA of the same frames: same subspace, same variance share
    centred = x - x.mean(0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    exact = vt[:8].T  # [F, 8]
    comps = projected.proj_components.numpy()
    assert np.allclose(comps.T @ comps, np.eye(8), atol=1e-4)  # orthonormal
    overlap = np.linalg.svd(exact.T @ comps, compute_uv=False)  # cosines of the principal angles
    assert overlap.min() > 0.99
    assert info["explained_variance"] == pytest.approx(float((s[:8] ** 2).sum() / (s**2).sum()), abs=2e-3)
    pixels = dataset.episode(0, keys=("pixels",))["pixels"][:5]
    with torch.no_grad():
        z = projected.encode_pixels(pixels)  # [5, 1, 8]
        tokens = encoder().encode_pixels(pixels)  # [5, 4, 16]
    assert z.shape == (5, 1, 8) and projected.config.tokens_per_frame == 1 and projected.config.out_dim == 8
    manual = (tokens.flatten(1) - projected.proj_mean) @ projected.proj_components
    assert torch.allclose(z[:, 0], manual, atol=1e-5)


def test_whitened_projection_gives_unit_variance_and_a_mahalanobis_energy(dataset, fitted):
    projected, _ = fitted
    train_ids, _ = dataset.split(0.34, 0)
    whitened, info = fit_projection(encoder(), dataset, 8, train_ids, progress=False, whiten=True)
    assert info["whiten"] is True and not fitted[1]["whiten"]
    x = np.concatenate([f.reshape(len(f), -1) for f in load_features(cache_path(dataset.root, encoder()), encoder(), train_ids)])
    with torch.no_grad():
        z = whitened.project(torch.from_numpy(x))[:, 0]  # [M, 8]
        plain = projected.project(torch.from_numpy(x))[:, 0]
    assert torch.allclose(z.std(0), torch.ones(8), atol=1e-3)  # each component has unit variance on the fit's frames
    # the same directions, each rescaled: the L2 energy on z is the Mahalanobis distance on the plain components
    ratio = z / plain
    assert torch.allclose(ratio, ratio[:1].expand_as(ratio), rtol=1e-3)
    assert torch.allclose(ratio[0], 1 / plain.std(0), rtol=1e-3)
    assert encoder_hash(whitened) != encoder_hash(projected)  # a different latent: caches and checkpoints tell them apart


def test_whitening_refuses_components_without_variance():
    rank2 = torch.randn(50, 2) @ torch.randn(2, 64)  # [M, N'*D] frames that vary in two directions only
    with pytest.raises(ValueError, match="no variance"):
        projection_from_tokens(encoder(), rank2, 4, whiten=True)
    assert projection_from_tokens(encoder(), rank2, 2, whiten=True)[0].config.project_dim == 2


def test_fit_refuses_bad_dims_and_a_projected_encoder(dataset, fitted):
    with pytest.raises(ValueError, match=r"dim must be in \[1, 64\]"):
        fit_projection(encoder(), dataset, 65, [0, 1], progress=False)
    with pytest.raises(ValueError, match="already projected"):
        fit_projection(fitted[0], dataset, 4, [0, 1], progress=False)


def test_projected_encoder_roundtrips_and_keeps_its_grid(tmp_path, fitted):
    projected, _ = fitted
    path = save_encoder(projected, tmp_path / "enc.pt")
    loaded = load_encoder(path)
    assert encoder_hash(loaded) == encoder_hash(projected) != encoder_hash(encoder())
    with pytest.raises(CheckpointError, match="fit a new projection"):
        load_encoder(path, pool_grid=0)
    with pytest.raises(CheckpointError, match="fit a new projection"):
        load_encoder(path, input_blur=1.0)
    assert load_encoder(path, pool_grid=projected.config.pool_grid).config == projected.config  # unchanged: fine


def test_projected_cache_matches_encoding_with_the_projected_encoder(dataset, fitted, tmp_path):
    projected, _ = fitted
    project_cache(dataset, encoder(), projected)
    derived = load_features(cache_path(dataset.root, projected), projected)
    path = cache_path(dataset.root, projected)
    path.rename(tmp_path / "derived.h5")
    encoded = load_features(cache_features(dataset, projected, progress=False), projected)
    assert all(d.shape == e.shape == (e.shape[0], 1, 8) for d, e in zip(derived, encoded))
    scale = np.abs(np.concatenate(encoded)).max()
    # both are stored as float16; the derived one also went through the float16 source cache
    assert max(np.abs(d - e).max() for d, e in zip(derived, encoded)) < 2e-2 * scale


def test_a_world_model_trains_on_projected_latents(dataset, fitted, tmp_path):
    projected, _ = fitted
    metrics = train_world_model(dataset, projected, tmp_path, "toy", PCFG, tcfg(steps=150, rollout_steps=1), progress=False)
    wm = WorldModel.load(tmp_path / "world_model.pt", env="toy", image_size=SIZE, action_dim=2)
    assert wm.latent_shape == (1, 8 + 2) and wm.visual_dim == 8 and metrics["tokens_per_frame"] == 1
    untrained = train_world_model(dataset, projected, tmp_path / "zero", "toy", PCFG, tcfg(steps=1), progress=False)
    assert metrics["log"][-1]["val_teacher_forced"] < untrained["log"][-1]["val_teacher_forced"] / 5
    assert min(metrics["probe_r2"].values()) > 0.8  # agent x, y read from the 8 components (and proprio)


def test_cli_fit_projection_writes_an_encoder_that_train_uses(dataset, tmp_path, capsys):
    from wmplan.cli import main

    enc = tmp_path / "enc.pt"
    save_encoder(encoder(), enc)
    out = tmp_path / "projected.pt"
    assert main(["fit-projection", "--encoder", str(enc), "--data", str(dataset.root), "--out", str(out), "--dim", "6",
                 "--quiet"]) == 0
    info = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert info["dim"] == 6 and 0 < info["explained_variance"] <= 1
    assert torch.load(out, weights_only=True)["projection"]["dim"] == 6
    args = ["train", "--env", "toy", "--data", str(dataset.root), "--encoder", str(out), "--out", str(tmp_path / "run"),
            "--steps", "2", "--batch-size", "8", "--val-every", "2", "--history", "2", "--frameskip", "2", "--quiet"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert json.loads(printed[printed.index("{"):])["tokens_per_frame"] == 1
    assert main([*args, "--pool-grid", "0"]) == 2  # the projection was fitted on the encoder's own grid
    assert "fit a new projection" in capsys.readouterr().err
    assert main(["fit-projection", "--encoder", str(enc), "--data", str(dataset.root), "--out", str(out),
                 "--dim", "999", "--quiet"]) == 2
    assert main(["fit-projection", "--encoder", str(enc), "--data", str(dataset.root), "--out", str(out),
                 "--dim", "6", "--whiten", "--quiet"]) == 0
    assert torch.load(out, weights_only=True)["projection"]["whiten"] is True
