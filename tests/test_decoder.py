"""The optional pixel decoder: it learns frames from frozen latents, refuses another encoder's latents,
and puts imagined frames beside the real ones in benchmark videos."""

import json

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from conftest import tiny_world_model
from test_train import PCFG, SIZE, encoder, make_dataset
from wmplan.checkpoint import CheckpointError
from wmplan.cli import main
from wmplan.decoder import DecoderConfig, PixelDecoder, fit_decoder, load_decoder, save_decoder
from wmplan.encoders import ViTEncoder
from wmplan.predictor import Predictor
from wmplan.world_model import WorldModel


def toy_world_model(seed=0):
    enc = ViTEncoder(encoder().config, seed=seed)
    pred = Predictor(PCFG, num_tokens=4, latent_dim=16 + 2, action_dim=2, proprio_dim=2, seed=0)
    return WorldModel(enc, pred, "toy", SIZE, 2, np.zeros(2), np.ones(2)).eval()


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    torch.set_num_threads(1)
    dataset = make_dataset(tmp_path_factory.mktemp("toy"))
    wm = toy_world_model()
    cfg = DecoderConfig(width=32, steps=300, batch_size=32, lr=3e-3, frame_stride=1, val_fraction=0.34)
    decoder, metrics = fit_decoder(wm, dataset, cfg, progress=False)
    return wm, decoder, metrics, cfg


def test_decoder_learns_frames_from_frozen_latents(fitted):
    _, _, metrics, _ = fitted
    assert metrics["train_mse_last"] < metrics["train_mse_first"] / 3  # it starts from the mean image
    # on held-out episodes it beats answering the mean training image by far, so it reads the latents
    assert metrics["val_mse"] < 0.6 * metrics["val_mse_mean_image"]


def test_decoder_file_round_trips_and_refuses_another_encoder(fitted, tmp_path):
    wm, decoder, metrics, cfg = fitted
    path = tmp_path / "decoder.pt"
    save_decoder(path, decoder, wm, cfg, metrics)
    z = torch.randn(3, 4, 18)
    np.testing.assert_array_equal(load_decoder(path, wm).to_uint8(z), decoder.to_uint8(z))
    with pytest.raises(CheckpointError, match="another encoder.*wmplan train-decoder"):
        load_decoder(path, toy_world_model(seed=1))
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_decoder(path, wm)


def test_decoder_needs_a_grid_that_doubles_to_the_image():
    with pytest.raises(ValueError, match="square token grid"):
        PixelDecoder(num_tokens=6, latent_dim=16, image_size=64)
    decoder = PixelDecoder(num_tokens=4, latent_dim=20, image_size=64)
    assert decoder(torch.zeros(2, 5, 4, 20)).shape == (2, 5, 64, 64, 3)
    with pytest.raises(ValueError, match=r"latents \[\.\.\., 4, 20\]"):
        decoder(torch.zeros(2, 4, 16))


def test_bench_videos_show_imagined_frames_when_a_decoder_lies_beside_the_checkpoint(tmp_path):
    wm = tiny_world_model()
    ckpt = tmp_path / "ckpt" / "world_model.pt"
    wm.save(ckpt)
    out = tmp_path / "bench"
    args = ["bench", "--env", "pusht", "--planner", "cem", "--episodes", "1", "--checkpoint", str(ckpt),
            "--planner-settings", '{"num_samples": 8, "num_elites": 2, "iterations": 1}', "--out", str(out), "--quiet"]
    assert main(args) == 0
    width_without = iio.imread(out / "videos" / "episode_000.gif").shape[2]
    save_decoder(ckpt.with_name("decoder.pt"), PixelDecoder(4, 20, 64, width=16), wm, DecoderConfig(width=16))
    assert main([*args[:-2], str(tmp_path / "bench2"), "--quiet"]) == 0
    assert json.loads((tmp_path / "bench2" / "summary.json").read_text())["decoder"] is True
    frames = iio.imread(tmp_path / "bench2" / "videos" / "episode_000.gif")  # [T, H, W, 3]
    assert width_without == 2 * frames.shape[1] and frames.shape[2] == 3 * frames.shape[1]  # real | imagined | goal
    # the results do not depend on the decoder: the same episode either way
    rows = [json.loads((d / "episodes.jsonl").read_text()) for d in (out, tmp_path / "bench2")]
    assert [(r["success"], r["metrics"]) for r in rows[0:1]] == [(r["success"], r["metrics"]) for r in rows[1:2]]


def test_imagined_rollout_video_shows_real_beside_imagined(tmp_path):
    from experiments.eval_world_model import imagined_rollout_video

    dataset = make_dataset(tmp_path / "toy", episodes=2)
    wm = toy_world_model()
    wm.decoder = PixelDecoder(4, 18, SIZE, width=16)
    imagined_rollout_video(wm, dataset, np.arange(2), tmp_path / "imagined.gif", windows=2, horizon=3)
    frames = iio.imread(tmp_path / "imagined.gif")
    assert frames.shape == (3, 2 * SIZE * 3, 2 * SIZE * 3, 3)  # 3 predicted steps; 2 windows of real | imagined
