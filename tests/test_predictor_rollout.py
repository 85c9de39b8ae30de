"""The cached rollout: same predictions (and gradients) as stepping `Predictor.forward` window by window."""

import pytest
import torch

import wmplan.predictor_rollout as predictor_rollout
from test_predictor import VARIANTS  # the predictor variants every predictor test runs through
from wmplan.predictor import Predictor, PredictorConfig
from wmplan.predictor_rollout import cached_rollout

N, D, A_FS = 4, 12, 4


def make(variant="concat", history=2, seed=0):
    cfg = PredictorConfig(history=history, frameskip=2, width=16, depth=2, num_heads=2, **VARIANTS[variant])
    pred = Predictor(cfg, N, D, 2, proprio_dim=3, seed=seed).eval()
    with torch.no_grad():  # adaLN-Zero starts as identity blocks; randomise so every path carries signal
        g = torch.Generator().manual_seed(seed + 1)
        for p in pred.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return pred


def inputs(B=2, S=3, T=2, H=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, T, N, D, generator=g), torch.rand(B, S, H, A_FS, generator=g) * 2 - 1,
            torch.rand(B, T - 1, A_FS, generator=g) * 2 - 1)


def stepwise(pred, z_hist, actions, a_past):
    """Reference: `forward(last_only=True)` on each sliding window, one candidate row per history copy."""
    B, S, H, _ = actions.shape
    T, h = z_hist.shape[1], pred.config.history
    z = z_hist[:, None].expand(B, S, *z_hist.shape[1:]).reshape(B * S, *z_hist.shape[1:])
    a = a_past[:, None].expand(B, S, *a_past.shape[1:]).reshape(B * S, T - 1, A_FS)
    a = torch.cat([a, actions.reshape(B * S, H, A_FS)], dim=1)  # every action, oldest first
    preds = []
    for step in range(H):
        window = min(h, z.shape[1])
        preds.append(pred(z[:, -window:], a[:, T - window + step : T + step], last_only=True))
        z = torch.cat([z, preds[-1][:, None]], dim=1)
    return torch.stack(preds, dim=1).view(B, S, H, N, D)


@pytest.fixture(params=["split", "joint"])
def path(request, monkeypatch):
    """Run each test through both step implementations (chosen by batch size in production)."""
    monkeypatch.setattr(predictor_rollout, "SPLIT_MIN_ROWS", 0 if request.param == "split" else 10**9)
    return request.param


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("history,T", [(2, 2), (3, 3), (3, 2), (1, 1), (2, 1)])
def test_cached_rollout_equals_stepwise_forward(path, variant, history, T):
    pred = make(variant, history)
    z, actions, a_past = inputs(T=T)
    with torch.inference_mode():
        got = cached_rollout(pred, z, actions, a_past)
        want = stepwise(pred, z, actions, a_past)
    assert got.shape == (2, 3, 4, N, D)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("variant", VARIANTS)
def test_gradients_match_stepwise_forward(path, variant):
    # float64: the gradients reach ~150, so float32 rounding alone (which depends on the CPU's kernels)
    # moves single elements by a few 1e-5; in float64 any real difference stands out
    pred = make(variant).double()
    z, actions, a_past = (t.double() for t in inputs())
    grads = []
    for fn in (cached_rollout, stepwise):
        a = actions.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(fn(pred, z, a, a_past).square().sum(), a)
        grads.append(grad)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-9, rtol=1e-9)


def test_later_actions_leave_earlier_predictions_bit_identical(path):
    pred = make()
    z, actions, a_past = inputs(H=5)
    changed = actions.clone()
    changed[:, :, 3] += 0.5
    with torch.inference_mode():
        out, out2 = cached_rollout(pred, z, actions, a_past), cached_rollout(pred, z, changed, a_past)
    assert torch.equal(out[:, :, :3], out2[:, :, :3])
    assert not torch.allclose(out[:, :, 3], out2[:, :, 3])


def test_candidates_do_not_see_each_other(path):
    pred = make()
    z, actions, a_past = inputs()
    with torch.inference_mode():
        together = cached_rollout(pred, z, actions, a_past)
        alone = torch.cat([cached_rollout(pred, z, actions[:, s : s + 1], a_past) for s in range(3)], dim=1)
    torch.testing.assert_close(together, alone, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("conditioning", ["concat", "adaln"])
def test_block_context_then_extend_equals_forward(conditioning):
    pred = make(conditioning, history=3)
    block, W = pred.blocks[0], pred.config.width
    g = torch.Generator().manual_seed(3)
    x, cond = torch.randn(2, 3 * N, W, generator=g), torch.randn(2, 3, W, generator=g)
    cond = cond if conditioning == "adaln" else None
    with torch.no_grad():
        full = block(x, cond, pred._mask(3, "cpu"), 3)
        kv, ctx = block.context(x[:, : 2 * N], None if cond is None else cond[:, :2], pred._mask(2, "cpu"), 2)
        new = block.extend(x[:, 2 * N :], None if cond is None else cond[:, 2:], kv)
    torch.testing.assert_close(ctx, full[:, : 2 * N], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(new, full[:, 2 * N :], atol=1e-6, rtol=1e-5)


def test_shapes_are_checked():
    pred = make()
    z, actions, a_past = inputs()
    with pytest.raises(ValueError, match="z must be"):
        cached_rollout(pred, z[..., :-1], actions, a_past)
    with pytest.raises(ValueError, match="actions must be"):
        cached_rollout(pred, z, actions[..., :-1], a_past)
