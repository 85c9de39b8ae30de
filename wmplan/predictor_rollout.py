"""Autoregressive rollout of the block-causal predictor that computes each piece of work once.

`Predictor.forward(..., last_only=True)` on a sliding window of T frames, called once per planned
step, redoes work whose result is already known. This rollout gives the same predictions (up to
float rounding, ~1e-6) while skipping three kinds of repeated work:

1. The input embedding of a frame, ``input_proj([z, a_emb]) + spatial_pos``, is computed once per
   frame (the weight is split into its latent and action columns, so all H action embeddings are
   one matmul) and reused while the frame stays in the window; only the time position is re-added.
2. Context frames that every candidate shares are computed once per history, not once per
   candidate: at the first step every frame but the newest holds an observed latent and a past
   action, and a block-causal frame attends only to earlier frames, so the context's keys and
   values in every block are the same for all S candidates (a KV cache shared across candidates).
3. Each step runs the context frames and the newest frame separately: the context without the
   newest frame's tokens (a block-causal pass over T-1 frames; in the last block only its keys and
   values), then the newest frame's queries against all keys without a mask — so no attention score
   is computed only to be masked out. Below `SPLIT_MIN_ROWS` candidate rows the step instead runs
   the window in one pass (`_step_joint`, as `forward` does), which needs fewer ops.

For the push-T predictor at 128 candidates and horizon 5 this computes 3.95 MFLOP per
candidate-step against `Predictor.flops_per_step`'s 4.61 (step 0 shares its context; later steps
re-embed only the new frame).
Later steps cannot reuse earlier steps' keys/values: when the window slides, every frame moves to a
new time position and loses its oldest neighbour, which changes its outputs in every block.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["cached_rollout", "SPLIT_MIN_ROWS"]

# Below this many candidate rows (B*S) a step runs the window in one pass: planning is then bound by
# per-op overhead (gradient planners' few starts), not arithmetic, so fewer ops beat fewer FLOPs.
SPLIT_MIN_ROWS = 32


class _Frame:
    """One window frame: its latent and its input tokens without time position.

    Tensors carry a leading ``[B, S']`` with ``S' = 1`` while the frame is shared by all candidates.
    """

    def __init__(self, z, tokens, cond, action=None):
        self.z, self.tokens, self.cond = z, tokens, cond  # [B, S', N, D], [B, S', N, W], [B, S', W] | None
        self.action = action  # [B, S, A_fs], the action taken from this frame (candidate frames only)

    @property
    def shared(self) -> bool:
        return all(t is None or t.shape[1] == 1 for t in (self.z, self.tokens, self.cond))


def cached_rollout(pred, z_hist: torch.Tensor, actions: torch.Tensor, a_past: torch.Tensor) -> torch.Tensor:
    """Predicted latents ``[B, S, H, N, D]`` for S candidate action sequences per history.

    Args:
        pred: a `Predictor`.
        z_hist: observed latents ``[B, T, N, D]``, T <= history, oldest first.
        actions: candidates ``[B, S, H, A_fs]``, the first taken from the newest observed frame.
        a_past: actions taken from the other history frames ``[B, T-1, A_fs]``.
    """
    B, T, N, D = z_hist.shape
    a_fs = pred.config.frameskip * pred.action_dim
    if actions.ndim != 4 or actions.shape[0] != B or actions.shape[-1] != a_fs:
        raise ValueError(f"actions must be [B={B}, S, H, frameskip*A={a_fs}], got {tuple(actions.shape)}")
    S, H = actions.shape[1:3]
    if tuple(a_past.shape) != (B, T - 1, a_fs):
        raise ValueError(f"a_past must be [{B}, {T - 1}, {a_fs}], got {tuple(a_past.shape)}")
    pred._check(z_hist, a_past.new_zeros(()).expand(B, T, a_fs))  # z [B, T <= history, N, D]
    cfg = pred.config
    pos = (pred.spatial_pos + pred.time_pos)[0]  # [history, N, W] spatial plus time position
    act_past, cond_past = _action_inputs(pred, a_past[:, None], z_hist[:, None, :-1])  # [B, 1, T-1, ...]
    act, _ = _action_inputs(pred, actions, None)  # [B, S, H, W] (concat) or None
    lat = _latent_tokens(pred, z_hist[:, None, :-1])  # [B, 1, T-1, N, W]
    frames = [_Frame(z_hist[:, None, j], _add(lat[:, :, j], act_past, j), _at(cond_past, j)) for j in range(T - 1)]
    frames.append(_candidate_frame(pred, z_hist[:, None, -1], act, actions, 0))  # shared latent, candidate action
    preds = []
    for h in range(H):
        window = frames[-cfg.history :]
        z_next = _step(pred, window[:-1], window[-1], pos, S)  # [B, S, N, D]
        preds.append(z_next)
        if h + 1 < H:
            frames = frames[len(frames) - cfg.history + 1 :] + [_candidate_frame(pred, z_next, act, actions, h + 1)]
    return torch.stack(preds, dim=2)  # [B, S, H, N, D]


def _candidate_frame(pred, z: torch.Tensor, act, actions: torch.Tensor, j: int) -> _Frame:
    """The frame of latents ``z [B, S', N, D]`` from which candidate step j is taken."""
    return _Frame(z, _add(_latent_tokens(pred, z), act, j), _cond(pred, actions[:, :, j], z), actions[:, :, j])


def _step(pred, context: list, new: _Frame, pos: torch.Tensor, S: int) -> torch.Tensor:
    """The newest frame's prediction ``[B, S, N, D]`` after the context frames (oldest first)."""
    B, _, N, W = new.tokens.shape
    if B * S < SPLIT_MIN_ROWS:
        return _step_joint(pred, context + [new], pos, S)
    Tc = len(context)
    x_new = (new.tokens + pos[Tc]).expand(B, S, N, W).reshape(B * S, N, W)
    cond_new = None if new.cond is None else new.cond.reshape(B * S, 1, W)
    x_ctx = cond_ctx = mask = None
    sc = 1 if all(f.shared for f in context) else S  # shared context: computed once per history
    if Tc:
        x_ctx = _positioned([f.tokens.expand(B, sc, N, W) for f in context], pos)  # [B, sc, Tc, N, W]
        x_ctx = x_ctx.reshape(B * sc, Tc * N, W)
        if new.cond is not None:
            cond_ctx = torch.stack([f.cond.expand(B, sc, W) for f in context], dim=2).reshape(B * sc, Tc, W)
        mask = pred._mask(Tc, x_ctx.device) if Tc > 1 else None
    for i, block in enumerate(pred.blocks):
        kv = None
        if Tc:
            kv, x_ctx = block.context(x_ctx, cond_ctx, mask, Tc, keys_only=i == len(pred.blocks) - 1)
        x_new = block.extend(x_new, cond_new, kv, group=S // sc)
    out = pred.head(pred._final_norm(x_new, cond_new, 1)).view(B, S, N, -1)
    return pred.finish(out, new.z, new.action)


def _step_joint(pred, window: list, pos: torch.Tensor, S: int) -> torch.Tensor:
    """`_step` as one block-causal pass over the whole window (fewer, larger ops; for small batches)."""
    B, _, N, W = window[-1].tokens.shape
    T = len(window)
    x = _positioned([f.tokens.expand(B, S, N, W) for f in window], pos)  # [B, S, T, N, W]
    cond = None
    if window[-1].cond is not None:
        cond = torch.stack([f.cond.expand(B, S, W) for f in window], dim=2).reshape(B * S, T, W)
    out = pred.transform(x.reshape(B * S, T * N, W), cond, T, last_only=True).view(B, S, N, -1)
    return pred.finish(out, window[-1].z, window[-1].action)


def _positioned(tokens: list, pos: torch.Tensor) -> torch.Tensor:
    """Frames' tokens ``[B, S, N, W]`` (oldest first) plus their positions: ``[B, S, T, N, W]``."""
    if len(tokens) == 1:  # one add, no stack copy
        return (tokens[0] + pos[0])[:, :, None]
    return torch.stack(tokens, dim=2) + pos[: len(tokens)]


def _latent_tokens(pred, z: torch.Tensor) -> torch.Tensor:
    """The latent part of the input embedding: ``[..., N, D] -> [..., N, W]``."""
    if pred.config.conditioning == "concat":  # the input bias goes with the action part
        return F.linear(z, pred.input_proj.weight[:, : pred.latent_dim])
    return pred.input_proj(z)


def _action_inputs(pred, actions: torch.Tensor, z):
    """Per-frame action inputs for ``actions [B, S, F, A_fs]``: concat -> (tokens ``[B, S, F, W]``, None);
    adaLN -> (None, condition ``[B, S, F, W]`` from the action and the proprio of latents ``z [B, S, F, N, D]``)."""
    a_emb = pred.action_encoder(actions)  # [B, S, F, E]
    if pred.config.conditioning == "concat":
        return F.linear(a_emb, pred.input_proj.weight[:, pred.latent_dim :], pred.input_proj.bias), None
    if z is None:
        return None, None
    proprio = z[..., 0, pred.latent_dim - pred.proprio_dim :]  # [B, S, F, P]
    return None, pred.cond_proj(torch.cat([a_emb, proprio], dim=-1))


def _cond(pred, action: torch.Tensor, z: torch.Tensor):
    """adaLN condition ``[B, S, W]`` of one frame (``action [B, S, A_fs]``, ``z [B, S', N, D]``); None for concat."""
    if pred.config.conditioning == "concat":
        return None
    z = z.expand(action.shape[0], action.shape[1], *z.shape[2:])
    return _action_inputs(pred, action[:, :, None], z[:, :, None])[1][:, :, 0]


def _add(lat: torch.Tensor, act, j: int) -> torch.Tensor:
    """Frame tokens ``[B, S', N, W]``: latent tokens plus action tokens of frame j (concat only)."""
    return lat if act is None else lat + act[:, :, j, None]


def _at(cond, j: int):
    return None if cond is None else cond[:, :, j]
