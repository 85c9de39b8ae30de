"""The latent predictor: block-causal mask, last-only shortcut, cost accounting."""

import pytest
import torch

from wmplan.predictor import PREDICTOR_CONFIGS, Predictor, PredictorConfig, block_causal_mask

N, D, A = 4, 12, 2


# predictor variants the tests run through: the two conditionings, and concat with the per-token MLP
VARIANTS = {"concat": {}, "adaln": {"conditioning": "adaln"}, "token-mlp": {"token_mlp": 8}}


def make(variant="concat", history=3, seed=0):
    cfg = PredictorConfig(history=history, frameskip=2, width=16, depth=2, num_heads=2, **VARIANTS[variant])
    return Predictor(cfg, N, D, A, proprio_dim=3, seed=seed).eval()


def inputs(B=2, T=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, T, N, D, generator=g), torch.randn(B, T, 2 * A, generator=g)


def test_mask_is_block_causal():
    mask = block_causal_mask(3, 2)
    assert mask.shape == (6, 6)
    assert mask[0, 1] and not mask[0, 2] and mask[5, 0] and not mask[3, 4]


@pytest.mark.parametrize("variant", VARIANTS)
def test_future_frames_and_actions_do_not_change_earlier_predictions(variant):
    pred = make(variant)
    # adaLN-Zero starts as identity blocks; randomise so conditioning really flows
    with torch.no_grad():
        for p in pred.parameters():
            p.add_(0.1 * torch.randn_like(p))
    z, a = inputs()
    out = pred(z, a)
    z2, a2 = z.clone(), a.clone()
    z2[:, 2] += 5.0
    a2[:, 2] -= 3.0
    out2 = pred(z2, a2)
    assert torch.equal(out[:, :2], out2[:, :2])  # bit-identical
    assert not torch.allclose(out[:, 2], out2[:, 2])
    a3 = a.clone()
    a3[:, 1] += 1.0  # changing the action of frame 1 changes predictions from frame 1 on, not frame 0
    out3 = pred(z, a3)
    assert torch.equal(out[:, 0], out3[:, 0]) and not torch.allclose(out[:, 1], out3[:, 1])


@pytest.mark.parametrize("variant", VARIANTS)
def test_last_only_equals_full_forward(variant):
    pred = make(variant)
    z, a = inputs()
    torch.testing.assert_close(pred(z, a, last_only=True), pred(z, a)[:, -1], atol=1e-6, rtol=1e-5)


def test_shorter_window_matches_prefix_of_longer():
    pred = make()
    z, a = inputs()
    torch.testing.assert_close(pred(z[:, :2], a[:, :2]), pred(z, a)[:, :2], atol=1e-6, rtol=1e-5)


def test_bad_shapes_raise():
    pred = make()
    z, a = inputs(T=4)
    with pytest.raises(ValueError, match="z must be"):
        pred(z, a)
    z, a = inputs()
    with pytest.raises(ValueError, match="actions must be"):
        pred(z, a[..., :1])
    with pytest.raises(ValueError):
        PredictorConfig(conditioning="film")


def test_default_pusht_predictor_is_cheap():
    cfg = PREDICTOR_CONFIGS["pusht"]
    pred = Predictor(cfg, num_tokens=16, latent_dim=128 + 4, action_dim=2, proprio_dim=4)
    assert pred.flops_per_step() <= 5e6
    assert pred.num_parameters() < 200_000


@pytest.mark.parametrize("variant", VARIANTS)
def test_flops_count_matches_profiler(variant):
    pred = make(variant)
    z, a = inputs(B=1)
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        pred(z, a, last_only=True)
    linear = counter.get_total_flops()  # the CPU attention kernel is not counted by the profiler
    assert pred.flops_breakdown()["linear"] == linear


def test_a_new_token_mlp_leaves_the_prediction_unchanged_and_is_counted():
    plain, branched = make("concat"), make("token-mlp")  # same seed: the branch is built after everything else
    z, a = inputs()
    torch.testing.assert_close(branched(z, a), plain(z, a), atol=0, rtol=0)  # its last layer starts at zero
    with torch.no_grad():
        branched.token_mlp.out.bias.fill_(1.0)
    assert not torch.allclose(branched(z, a), plain(z, a))  # ... and it is on the output path
    assert branched.flops_per_step() - plain.flops_per_step() == branched.token_mlp.flops() > 0
    with pytest.raises(ValueError, match="token_mlp"):
        PredictorConfig(token_mlp=-1)
