"""Encoders: DINOv2 key layout, loading official-format state dicts, pos-embed interpolation."""

import math

import numpy as np
import pytest
import torch

from wmplan.checkpoint import CheckpointError
from wmplan.encoders import VIT_CONFIGS, ViTConfig, ViTEncoder, encoder_hash, load_dinov2, load_encoder, save_encoder

# A tiny DINOv2-like ViT: patch 14, 2 blocks, 4 registers, pos_embed stored for a 4x4 grid.
TINY = ViTConfig(image_size=56, patch_size=14, embed_dim=32, depth=2, num_heads=2, num_register_tokens=4, pos_grid=4)

DINOV2_BLOCK_KEYS = {
    "norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias",
    "ls1.gamma", "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight",
    "mlp.fc2.bias", "ls2.gamma",
}


def frames(B=3, size=56, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (B, size, size, 3), dtype=np.uint8)


def random_dinov2_state(seed=0):
    """A state dict in DINOv2's layout with random weights, as a test stand-in for dinov2_vits14."""
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=g) * 0.1 for k, v in ViTEncoder(TINY).state_dict().items()}


def test_parameter_names_match_dinov2():
    keys = set(ViTEncoder(TINY).state_dict())
    assert {"patch_embed.proj.weight", "patch_embed.proj.bias", "cls_token", "pos_embed", "register_tokens",
            "mask_token", "norm.weight", "norm.bias"} <= keys
    assert {f"blocks.1.{k}" for k in DINOV2_BLOCK_KEYS} <= keys
    assert ViTEncoder(TINY).state_dict()["pos_embed"].shape == (1, 17, 32)


def test_dinov2_state_dict_file_loads_with_identical_features(tmp_path):
    state = random_dinov2_state()
    path = tmp_path / "dinov2_tiny.pth"
    torch.save(state, path)
    reference = ViTEncoder(TINY)
    reference.load_state_dict(state)
    loaded = load_dinov2(path, image_size=56, num_heads=2)
    assert loaded.config.num_register_tokens == 4 and loaded.config.depth == 2 and loaded.config.patch_size == 14
    assert not any(p.requires_grad for p in loaded.parameters()) and not loaded.training
    x = frames()
    with torch.no_grad():
        assert torch.equal(loaded.encode_pixels(x), reference.encode_pixels(x))
    # a training-style checkpoint ({"teacher": {"backbone.*": ...}}) loads too
    torch.save({"teacher": {f"backbone.{k}": v for k, v in state.items()}}, tmp_path / "train.pth")
    with torch.no_grad():
        assert torch.equal(load_encoder(tmp_path / "train.pth", image_size=56, num_heads=2).encode_pixels(x), loaded.encode_pixels(x))


def test_pos_embed_interpolates_to_other_image_sizes(tmp_path):
    torch.save(random_dinov2_state(), tmp_path / "w.pth")
    enc = load_dinov2(tmp_path / "w.pth", image_size=112, pool_grid=4, num_heads=2)  # 8x8 patches from a stored 4x4 grid
    assert enc.interpolate_pos_encoding(8, 8).shape == (1, 65, 32)
    assert enc.encode_pixels(frames(size=64)).shape == (3, 16, 32)  # 64 px frames resized to 112, pooled 8x8 -> 4x4


def test_missing_weights_and_hub_are_explicit(tmp_path):
    with pytest.raises(FileNotFoundError, match="hub=True"):
        load_dinov2("dinov2_vits14")
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_dinov2(tmp_path / "bad.pth")
    torch.save({"foo": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="DINOv2"):
        load_dinov2(tmp_path / "other.pth")


def test_wmplan_encoder_roundtrip_and_hash(tmp_path):
    enc = ViTEncoder(VIT_CONFIGS["vit-tiny-64"], seed=1)
    save_encoder(enc, tmp_path / "enc.pt")
    loaded = load_encoder(tmp_path / "enc.pt")
    assert encoder_hash(loaded) == encoder_hash(enc) != encoder_hash(ViTEncoder(VIT_CONFIGS["vit-tiny-64"], seed=2))
    z = loaded.encode_pixels(frames(size=64))
    assert z.shape == (3, 16, 128)
    with pytest.raises(ValueError, match="uint8"):
        loaded.encode_pixels(frames(size=64).astype(np.float32))


@pytest.mark.filterwarnings("ignore:bf16 on cpu")  # emulated on AVX2-only CI machines: slow, still correct
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_dino_pretraining_loss_decreases_without_collapse(precision):
    import math

    from wmplan.encoders.dino_pretrain import DinoConfig, pretrain_dino, sinkhorn_knopp

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    frames = np.zeros((64, 32, 32, 3), np.uint8)
    for im in frames:  # coloured squares on coloured backgrounds
        im[:] = rng.integers(0, 80, 3)
        for r, c in rng.integers(0, 24, (2, 2)):
            im[r : r + 8, c : c + 8] = rng.integers(100, 256, 3)
    cfg = DinoConfig(arch="vit-micro-32", steps=80, batch_size=32, out_dim=16, head_hidden=64, bottleneck=32,
                     local_crops=2, warmup_steps=5, lr=1e-3, precision=precision)
    enc, log = pretrain_dino(frames, cfg, seed=0, progress=False, log_every=8)
    assert all(p.dtype == torch.float32 for p in enc.parameters())  # bf16 autocasts the passes, not the weights
    for part in ("dino", "ibot"):  # image-level and masked patch-level self-distillation both learn
        late = np.mean([entry[part] for entry in log[-3:]])
        assert late < 0.7 * log[0][part], part
        assert late < math.log(cfg.out_dim) - 0.2, part  # a collapsed (uniform) student would sit at log K
    assert not any(p.requires_grad for p in enc.parameters())
    q = sinkhorn_knopp(torch.randn(32, 16))
    torch.testing.assert_close(q.sum(1), torch.ones(32))  # rows are distributions


def test_interrupted_dino_pretraining_resumes_to_the_same_result(tmp_path, monkeypatch):
    from wmplan.checkpoint import CheckpointError
    from wmplan.encoders import dino_pretrain
    from wmplan.encoders.dino_pretrain import DinoConfig, pretrain_dino

    torch.set_num_threads(1)
    frames = np.random.default_rng(0).integers(0, 256, (24, 32, 32, 3), dtype=np.uint8)
    cfg = DinoConfig(arch="vit-micro-32", steps=6, batch_size=8, out_dim=16, head_hidden=32, bottleneck=16,
                     local_crops=1, warmup_steps=2)
    reference, ref_log = pretrain_dino(frames, cfg, seed=3, progress=False, log_every=1)

    state, real_save = tmp_path / "enc.pt.state", dino_pretrain.save_atomic

    def save_then_crash(obj, path):  # the process dies right after the first state write (step 3)
        real_save(obj, path)
        raise KeyboardInterrupt

    monkeypatch.setattr(dino_pretrain, "save_atomic", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        pretrain_dino(frames, cfg, seed=3, progress=False, log_every=1, state_path=state, save_every=3)
    monkeypatch.undo()
    assert torch.load(state, weights_only=True)["step"] == 3
    resumed, log = pretrain_dino(frames, cfg, seed=3, progress=False, log_every=1, state_path=state, save_every=3)
    assert log == ref_log
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    with pytest.raises(CheckpointError, match="another configuration"):  # never silently mixes two runs
        pretrain_dino(frames, DinoConfig(**{**vars(cfg), "lr": 1e-4}), seed=3, progress=False, state_path=state)


def test_masked_tokens_use_the_mask_token_and_nothing_else_changes():
    enc = ViTEncoder(VIT_CONFIGS["vit-micro-32"], seed=0)
    x = torch.randn(2, 3, 32, 32)
    masks = torch.zeros(2, 16, dtype=torch.bool)
    torch.testing.assert_close(enc.forward_tokens(x, masks=masks), enc.forward_tokens(x), rtol=0, atol=0)
    masks[0, 3] = True
    with torch.no_grad():
        enc.mask_token.fill_(7.0)
        x2 = x.clone()
        x2[0, :, 0:8, 24:32] = 100.0  # change the content of patch 3 (row 0, column 3) of image 0
    # a masked patch's pixels are never seen: changing them leaves every output bit-identical
    torch.testing.assert_close(enc.forward_tokens(x2, masks=masks), enc.forward_tokens(x, masks=masks), rtol=0, atol=0)


def test_intermediate_tokens_end_with_the_final_tokens_and_refuse_more_blocks_than_the_depth():
    enc = ViTEncoder(ViTConfig(image_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2), seed=0).freeze()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        layers = enc.intermediate_tokens(x, 2)
        first = enc.norm(enc.blocks[0](enc._embed(x)))
    assert len(layers) == 2
    torch.testing.assert_close(layers[-1], enc.forward_tokens(x), rtol=0, atol=0)
    torch.testing.assert_close(layers[0], first, rtol=0, atol=0)
    with pytest.raises(ValueError, match="between 1 and the encoder's depth 2"):
        enc.intermediate_tokens(x, 3)


def test_random_patch_masks_follow_the_config():
    from wmplan.encoders.dino_pretrain import DinoConfig, random_patch_masks

    cfg = DinoConfig(mask_ratio=(0.25, 0.25), mask_probability=0.5)
    masks = random_patch_masks(400, 64, cfg, torch.Generator().manual_seed(0))
    counts = masks.sum(1)
    assert set(counts.tolist()) == {0, 16}  # unmasked images, or a quarter of the 64 patches
    assert 0.4 < (counts > 0).float().mean() < 0.6
    with pytest.raises(ValueError, match="mask_ratio"):
        DinoConfig(mask_ratio=(0.5, 1.0))


def test_koleo_rewards_spread_features():
    from wmplan.encoders.dino_pretrain import koleo_loss

    spread = torch.eye(8)  # 8 orthogonal unit vectors
    bunched = torch.ones(8, 8) + 0.01 * torch.randn(8, 8, generator=torch.Generator().manual_seed(0))
    assert koleo_loss(spread) < koleo_loss(bunched)
    assert abs(koleo_loss(spread).item() + math.log(math.sqrt(2))) < 1e-5  # nearest neighbour at distance sqrt(2)


def test_a_world_model_checkpoint_lends_its_encoder(tiny_pusht_checkpoint):
    from wmplan.world_model import WorldModel

    wm = WorldModel.load(tiny_pusht_checkpoint)
    enc = load_encoder(tiny_pusht_checkpoint)  # `wmplan train --encoder world_model.pt` retrains on the same features
    x = torch.randn(2, 3, wm.encoder.config.image_size, wm.encoder.config.image_size)
    torch.testing.assert_close(enc(x), wm.encoder(x), rtol=0, atol=0)
    assert not any(p.requires_grad for p in enc.parameters())


def test_the_token_grid_of_a_saved_encoder_can_be_changed_at_load(tmp_path, tiny_pusht_checkpoint):
    enc = ViTEncoder(VIT_CONFIGS["vit-tiny-64"], seed=1)  # pools its 8x8 patches to 4x4
    save_encoder(enc, tmp_path / "enc.pt")
    every = load_encoder(tmp_path / "enc.pt", pool_grid=0)
    assert encoder_hash(every) != encoder_hash(enc)  # a feature cache never mixes grids
    fine, coarse = every.encode_pixels(frames(size=64)), enc.encode_pixels(frames(size=64))  # [3, 64, D], [3, 16, D]
    pooled = fine.view(3, 4, 2, 4, 2, -1).mean((2, 4)).reshape(3, 16, -1)  # 2x2 patch blocks, row-major
    torch.testing.assert_close(pooled, coarse, rtol=1e-5, atol=1e-5)
    assert load_encoder(tiny_pusht_checkpoint, pool_grid=0).config.pool_grid == 0  # a world model's encoder too
    with pytest.raises(ValueError, match="must divide"):
        load_encoder(tmp_path / "enc.pt", pool_grid=3)


def test_input_blur_is_a_normalised_low_pass_set_at_load_and_part_of_the_hash(tmp_path):
    from wmplan.encoders.vit import gaussian_blur

    flat = torch.full((1, 3, 16, 16), 0.7)
    torch.testing.assert_close(gaussian_blur(flat, 1.5), flat)  # weights sum to one, edges replicated
    dot = torch.zeros(1, 1, 15, 15)
    dot[0, 0, 7, 7] = 1.0
    spread = gaussian_blur(dot, 1.0)[0, 0]
    assert abs(float(spread.sum()) - 1.0) < 1e-6 and 0.1 < float(spread[7, 7]) < 0.2  # 1 / (2 pi sigma^2) = 0.16
    torch.testing.assert_close(spread, spread.T)
    assert gaussian_blur(dot, 0.0) is dot

    enc = ViTEncoder(VIT_CONFIGS["vit-tiny-64"], seed=1)
    save_encoder(enc, tmp_path / "enc.pt")
    blurred = load_encoder(tmp_path / "enc.pt", input_blur=1.5)
    assert blurred.config.input_blur == 1.5 and load_encoder(tmp_path / "enc.pt").config.input_blur == 0.0
    assert encoder_hash(blurred) != encoder_hash(enc)  # a feature cache never mixes blurred and sharp features
    x = frames(size=64)
    assert not torch.allclose(blurred.encode_pixels(x), enc.encode_pixels(x))
    with pytest.raises(ValueError, match="input_blur"):
        ViTConfig(input_blur=-1.0)


def test_unset_input_blur_and_projection_leave_existing_encoder_hashes_unchanged():
    import hashlib, json
    from dataclasses import asdict

    enc = ViTEncoder(ViTConfig(image_size=16, patch_size=8, embed_dim=8, depth=1, num_heads=2), seed=0)
    config = {k: v for k, v in asdict(enc.config).items() if k not in ("input_blur", "project_dim")}  # as hashed before
    h = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for name, tensor in sorted(enc.state_dict().items()):
        h.update(name.encode()), h.update(tensor.float().numpy().tobytes())
    assert encoder_hash(enc) == h.hexdigest()


def test_dino_pretraining_sees_frames_through_the_configured_low_pass():
    from wmplan.cli_commands.pretrain_encoder import config_overrides
    from wmplan.encoders.dino_pretrain import DinoConfig, pretrain_dino

    torch.set_num_threads(1)
    frames = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    overrides = config_overrides(["input_blur=1.5"])
    assert overrides == {"input_blur": 1.5}
    cfg = DinoConfig(arch="vit-micro-32", steps=2, batch_size=4, out_dim=16, head_hidden=32, bottleneck=16,
                     local_crops=0, **overrides)
    enc, _ = pretrain_dino(frames, cfg, seed=0, progress=False)
    assert enc.config.input_blur == 1.5  # the saved encoder encodes through the same low-pass it learned behind
    plain, _ = pretrain_dino(frames, DinoConfig(**{**vars(cfg), "input_blur": 0.0}), seed=0, progress=False)
    assert plain.config.input_blur == 0.0
    assert not torch.equal(enc.encode_pixels(frames), plain.encode_pixels(frames))
    with pytest.raises(ValueError, match="input_blur"):
        DinoConfig(input_blur=-0.5)


def test_unknown_precision_is_refused_by_name():
    from wmplan.cli_commands.pretrain_encoder import config_overrides
    from wmplan.encoders.dino_pretrain import DinoConfig
    from wmplan.precision import autocast

    with pytest.raises(ValueError, match="precision must be one of fp32, bf16"):
        DinoConfig(precision="fp16")
    with pytest.raises(ValueError, match="cpu or cuda"):
        autocast("mps", "bf16")
    with pytest.raises(ValueError, match="own flags"):  # the flag, not --set, chooses it
        config_overrides(["precision=bf16"])


def test_emulated_bf16_warns_and_native_bf16_does_not(monkeypatch):
    import warnings

    from wmplan import precision

    for native in (False, True):
        monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: native)
        assert precision.native_bf16("cpu") is native
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            precision.warn_if_emulated("cpu", "bf16")
            precision.warn_if_emulated("cpu", "fp32")  # fp32 never warns
        assert [str(w.message).split(":")[0] for w in caught] == ([] if native else ["bf16 on cpu"])
    assert precision.native_bf16("meta") is False


def test_bf16_cpu_training_uses_the_math_attention_path_and_nothing_else_changes():
    from wmplan.precision import short_sequence_attention

    assert torch.backends.cuda.flash_sdp_enabled()  # PyTorch's default: the fused kernel may be chosen
    with short_sequence_attention("cpu", "bf16"):
        assert torch.backends.cuda.math_sdp_enabled() and not torch.backends.cuda.flash_sdp_enabled()
        q = torch.randn(2, 2, 65, 8)
        fast = torch.nn.functional.scaled_dot_product_attention(q, q, q)
    assert torch.backends.cuda.flash_sdp_enabled()  # restored on leaving
    torch.testing.assert_close(fast, torch.softmax(q @ q.transpose(-1, -2) / 8**0.5, -1) @ q)
    for device, precision in (("cpu", "fp32"), ("meta", "fp32")):
        with short_sequence_attention(device, precision):
            assert torch.backends.cuda.flash_sdp_enabled()
    with pytest.raises(ValueError, match="precision must be one of"):
        short_sequence_attention("cpu", "fp16")
