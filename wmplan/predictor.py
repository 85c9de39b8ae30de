"""Action-conditioned latent predictor: a ViT over (frames x tokens) with a block-causal frame mask.

After DINO-WM (Zhou et al. 2024, Sec. 3.2): tokens of frame t attend to all tokens of frames <= t,
and the output at frame t predicts the latent of frame t+1, so one forward pass teacher-forces
every frame of a window. Actions condition each frame either by concatenating an action embedding
to every token (DINO-WM) or through adaptive LayerNorm (DiT's adaLN-Zero, Peebles & Xie 2023; as
recommended for world models by the JEPA-WMs study, Terver et al. 2025). Proprio is part of z (see
`WorldModel.encode`); with adaLN it also feeds the per-frame condition.

Planning calls this on tens of thousands of candidate-steps per re-plan, so the default is small
(see `flops_per_step`), and `forward(..., last_only=True)` skips the work only needed for
frames other than the newest in the last block.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PredictorConfig", "Predictor", "PREDICTOR_CONFIGS", "block_causal_mask"]


@dataclass(frozen=True)
class PredictorConfig:
    """Architecture of the latent predictor."""

    history: int = 2  # frames of context T the predictor sees
    frameskip: int = 5  # env steps between kept frames; their actions are concatenated
    width: int = 64  # transformer width W
    depth: int = 2  # transformer blocks
    num_heads: int = 4  # attention heads
    mlp_ratio: float = 2.0  # MLP hidden width / W
    conditioning: str = "concat"  # "concat" (DINO-WM) or "adaln" (JEPA-WMs)
    action_emb_dim: int = 16  # action embedding size E
    residual: bool = True  # predict z_{t+1} - z_t instead of z_{t+1}
    token_mlp: int = 0  # hidden width of a per-token MLP on (z_t, a_t, token position) added to the output (0: none)

    def __post_init__(self):
        if self.conditioning not in ("concat", "adaln"):
            raise ValueError(f"conditioning must be 'concat' or 'adaln', got {self.conditioning!r}")
        if self.history < 1 or self.frameskip < 1 or self.depth < 1:
            raise ValueError("history, frameskip and depth must be >= 1")
        if self.token_mlp < 0:
            raise ValueError(f"token_mlp must be >= 0 (0: no per-token MLP), got {self.token_mlp}")
        if self.width % self.num_heads:
            raise ValueError(f"width {self.width} must be divisible by num_heads {self.num_heads}")


PREDICTOR_CONFIGS: dict[str, PredictorConfig] = {
    # ~4.6 MFLOP per candidate-step with 16 tokens of 128+P dims: ~0.1 ms on a 2-core CPU.
    "pusht": PredictorConfig(history=2, frameskip=5, width=64, depth=2, num_heads=4, mlp_ratio=2.0),
    # ~4x the cost; for GPU training / quality comparisons.
    "pusht-large": PredictorConfig(history=3, frameskip=5, width=128, depth=4, num_heads=4, mlp_ratio=2.0),
    # One projected token per frame (`wmplan fit-projection`, 64 features + proprio): the transformer acts as a
    # wide MLP over the history, ~6 MFLOP per candidate-step.
    "pusht-projected": PredictorConfig(history=2, frameskip=5, width=256, depth=4, num_heads=4, mlp_ratio=4.0),
    "pusht-adaln": PredictorConfig(history=2, frameskip=5, width=64, depth=2, num_heads=4, conditioning="adaln"),
    # Point mass at 20 Hz: a planned step is 5 env steps (0.25 s), as in DINO-WM's PointMaze.
    "maze": PredictorConfig(history=2, frameskip=5, width=64, depth=2, num_heads=4, mlp_ratio=2.0),
    # Chips: one env step is a whole push, so no frameskip.
    "chips": PredictorConfig(history=1, frameskip=1, width=64, depth=2, num_heads=4, mlp_ratio=2.0),
}


def block_causal_mask(frames: int, tokens: int, device=None) -> torch.Tensor:
    """Boolean `[T*N, T*N]` mask, True where a query token may attend to a key token (frame_k <= frame_q)."""
    frame = torch.arange(frames, device=device).repeat_interleave(tokens)  # [T*N]
    return frame[:, None] >= frame[None, :]


class PredictorBlock(nn.Module):
    """Pre-norm transformer block; with adaLN, shift/scale/gate come from a per-frame condition."""

    def __init__(self, cfg: PredictorConfig):
        super().__init__()
        W, self.heads = cfg.width, cfg.num_heads
        self.adaln = cfg.conditioning == "adaln"
        self.norm1 = nn.LayerNorm(W, elementwise_affine=not self.adaln, eps=1e-6)
        self.qkv = nn.Linear(W, 3 * W)
        self.proj = nn.Linear(W, W)
        self.norm2 = nn.LayerNorm(W, elementwise_affine=not self.adaln, eps=1e-6)
        self.fc1 = nn.Linear(W, int(W * cfg.mlp_ratio))
        self.fc2 = nn.Linear(int(W * cfg.mlp_ratio), W)
        if self.adaln:
            self.modulation = nn.Linear(W, 6 * W)
            nn.init.zeros_(self.modulation.weight)  # adaLN-Zero: each block starts as the identity
            nn.init.zeros_(self.modulation.bias)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        B, L, W = x.shape
        return x.view(B, L, self.heads, W // self.heads).transpose(1, 2)  # [B, heads, L, W/heads]

    def forward(self, x, cond, mask, frames: int, last_only: bool = False):
        """x `[B, T*N, W]`, cond `[B, T, W]` or None -> `[B, T*N, W]` (or `[B, N, W]` if last_only)."""
        B, L, W = x.shape
        N = L // frames
        mod = self._modulation(cond, N) if self.adaln else [None] * 6  # each [B, T*N, W]
        h = _modulate(self.norm1(x), mod[0], mod[1])
        if last_only:  # only the newest frame's queries: they see every frame, so no mask is needed
            w_q, w_kv = self.qkv.weight.split([W, 2 * W]), self.qkv.bias.split([W, 2 * W])
            q = F.linear(h[:, -N:], w_q[0], w_kv[0])  # [B, N, W]
            k, v = F.linear(h, w_q[1], w_kv[1]).chunk(2, dim=-1)  # [B, T*N, W] each
            x, mask = x[:, -N:], None
            mod = [m[:, -N:] if m is not None else None for m in mod]
        else:
            q, k, v = self.qkv(h).chunk(3, dim=-1)
        x = x + _gate(self._attend(q, k, v, mask), mod[2])
        return self._mlp(x, mod)

    # The two halves of a block for a cached rollout (`wmplan.predictor_rollout`): the context frames
    # once, then the newest frame attending to their keys/values. Same arithmetic as `forward`.
    def context(self, x, cond, mask, frames: int, keys_only: bool = False):
        """Context frames `x [B, Tc*N, W]` -> (keys|values `[B, Tc*N, 2W]`, output `[B, Tc*N, W]` or None)."""
        B, L, W = x.shape
        mod = self._modulation(cond, L // frames) if self.adaln else [None] * 6
        h = _modulate(self.norm1(x), mod[0], mod[1])
        if keys_only:  # the last block: only the newest frame's output is used
            return F.linear(h, self.qkv.weight[W:], self.qkv.bias[W:]), None
        q, kv = self.qkv(h).split([W, 2 * W], dim=-1)
        x = x + _gate(self._attend(q, *kv.chunk(2, dim=-1), mask), mod[2])
        return kv, self._mlp(x, mod)

    def extend(self, x, cond, kv_context, group: int = 1):
        """Newest frame `x [B*G, N, W]` after context keys|values `[B, Lc, 2W]` (shared by G rows) -> `[B*G, N, W]`.

        Row b*G + g of `x` sees row b of `kv_context`: the context of G candidates is computed once.
        """
        BG, N, W = x.shape
        mod = self._modulation(cond, N) if self.adaln else [None] * 6  # cond [B*G, 1, W]
        h = _modulate(self.norm1(x), mod[0], mod[1])
        q, kv = self.qkv(h).split([W, 2 * W], dim=-1)
        if kv_context is None:
            att = self._attend(q, *kv.chunk(2, dim=-1), None)
        else:  # the newest frame sees every frame: no mask
            att = self.proj(self._attend_context(q, kv, kv_context, group))
        x = x + _gate(att, mod[2])
        return self._mlp(x, mod)

    def _attend_context(self, q, kv, kv_context, group: int) -> torch.Tensor:
        """Attention of `q [B*G, N, W]` over context plus own keys|values -> `[B*G, N, W]` (before `proj`).

        Batched matmuls over (row, head) rather than `scaled_dot_product_attention`, whose CPU kernel
        does not speed up with a second thread for these short sequences (16 queries, > 16 keys).
        """
        BG, N, W = q.shape
        B, Lc = kv_context.shape[:2]
        H, E = self.heads, W // self.heads
        heads_first = (3, 0, 1, 4, 2, 5)  # [B, G, L, 2, H, E] -> [2, B, G, H, L, E]
        ctx = kv_context.view(B, 1, Lc, 2, H, E).expand(B, group, Lc, 2, H, E).permute(heads_first)  # views
        kv = torch.cat([ctx, kv.view(B, group, N, 2, H, E).permute(heads_first)], dim=4)  # one copy
        kv = kv.view(2, BG * H, Lc + N, E)
        q = q.view(BG, N, H, E).transpose(1, 2).reshape(BG * H, N, E)
        scores = torch.bmm(q, kv[0].transpose(1, 2)).mul_(E**-0.5)  # [B*G*H, N, L]
        att = torch.bmm(torch.softmax(scores, dim=-1), kv[1])  # [B*G*H, N, E]
        return att.view(BG, H, N, E).transpose(1, 2).reshape(BG, N, W)

    def _attend(self, q, k, v, mask):
        """Multi-head attention and output projection: q `[B, Lq, W]`, k, v `[B, Lk, W]` -> `[B, Lq, W]`."""
        B, Lq, W = q.shape
        att = F.scaled_dot_product_attention(self._split(q), self._split(k), self._split(v), attn_mask=mask)
        return self.proj(att.transpose(1, 2).reshape(B, Lq, W))

    def _mlp(self, x, mod):
        h = _modulate(self.norm2(x), mod[3], mod[4])
        return x + _gate(self.fc2(F.gelu(self.fc1(h))), mod[5])

    def _modulation(self, cond: torch.Tensor, tokens: int) -> list[torch.Tensor]:
        B, T, W = cond.shape
        mod = self.modulation(F.silu(cond))  # [B, T, 6W]
        mod = mod[:, :, None].expand(B, T, tokens, 6 * W).reshape(B, T * tokens, 6 * W)  # per token
        return list(mod.chunk(6, dim=-1))


class TokenMLP(nn.Module):
    """Per-token update from the token's own latent, the frame's actions and the token's position.

    Each token decides alone how the actions change it (where the pusher lands in it), with a wider
    hidden layer than the transformer's: at width 64 the push-T transformer learns to predict the
    visual tokens without reading its actions (`experiments/eval_world_model.py --action-use-only`).
    Measured so far it has not helped: it did not make that predictor read its actions, and on the
    low-pass-pretrained encoder, where the transformer alone reads them, it adds nothing
    (`experiments/results/pusht_dino_blur15_pilot/`). An option to try, not a default.
    The last layer starts at zero, so a new branch leaves the predictor's output unchanged.
    """

    def __init__(self, latent_dim: int, action_dim: int, num_tokens: int, hidden: int):
        super().__init__()
        self.latent_in = nn.Linear(latent_dim, hidden)
        self.action_in = nn.Linear(action_dim, hidden, bias=False)
        self.position = nn.Parameter(torch.zeros(num_tokens, hidden))  # a learned first-layer bias per token
        self.fc2 = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, latent_dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """z `[..., N, D]`, actions `[..., A_fs]` -> `[..., N, D]` (leading dims broadcast: z may be shared
        by candidates, `[B, 1, N, D]` against actions `[B, S, A_fs]`)."""
        h = F.gelu(self.latent_in(z) + self.action_in(actions)[..., None, :] + self.position)  # [..., N, H]
        return self.out(F.gelu(self.fc2(h)))

    def flops(self) -> int:
        """Per frame of N tokens (2 per multiply-add; the action's first layer is once per frame)."""
        N, H = self.position.shape
        D, A = self.latent_in.in_features, self.action_in.in_features
        return 2 * (N * (D * H + H * H + H * D) + A * H)


def _modulate(x, shift, scale):
    return x if shift is None else x * (1 + scale) + shift


def _gate(x, gate):
    return x if gate is None else x * gate


class Predictor(nn.Module):
    """Predicts the next latent of every frame in a window (block-causal, action-conditioned).

    Args:
        config: the architecture.
        num_tokens: tokens per frame N.
        latent_dim: latent width D (visual features + proprio embedding).
        action_dim: env action dimension A; the predictor takes `frameskip * A` per frame.
        proprio_dim: trailing entries of D that hold the proprio embedding (adaLN conditions on them).
        seed: seed of the random initialisation.
    """

    def __init__(self, config: PredictorConfig, num_tokens: int, latent_dim: int, action_dim: int,
                 proprio_dim: int = 0, seed: int = 0):
        super().__init__()
        with torch.random.fork_rng(devices=[]):  # nn.Linear draws from the global generator; keep it untouched
            torch.manual_seed(seed)
            self._build(config, num_tokens, latent_dim, action_dim, proprio_dim)
        self._masks: dict = {}

    def _build(self, config, num_tokens, latent_dim, action_dim, proprio_dim):
        cfg, W, E = config, config.width, config.action_emb_dim
        self.config, self.num_tokens, self.latent_dim = config, num_tokens, latent_dim
        self.action_dim, self.proprio_dim = action_dim, proprio_dim
        self.action_encoder = nn.Linear(cfg.frameskip * action_dim, E)
        concat = cfg.conditioning == "concat"
        self.input_proj = nn.Linear(latent_dim + (E if concat else 0), W)
        self.spatial_pos = nn.Parameter(torch.randn(1, 1, num_tokens, W) * 0.02)
        self.time_pos = nn.Parameter(torch.randn(1, cfg.history, 1, W) * 0.02)
        if not concat:
            self.cond_proj = nn.Linear(E + proprio_dim, W)
            self.final_modulation = nn.Linear(W, 2 * W)
            nn.init.zeros_(self.final_modulation.weight)
            nn.init.zeros_(self.final_modulation.bias)
        self.blocks = nn.ModuleList(PredictorBlock(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(W, elementwise_affine=concat, eps=1e-6)
        self.head = nn.Linear(W, latent_dim)
        self.token_mlp = TokenMLP(latent_dim, cfg.frameskip * action_dim, num_tokens, cfg.token_mlp) if cfg.token_mlp else None

    def _mask(self, frames: int, device) -> torch.Tensor:
        key = (frames, str(device))
        if key not in self._masks:
            self._masks[key] = block_causal_mask(frames, self.num_tokens, device)
        return self._masks[key]

    def forward(self, z: torch.Tensor, actions: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """Next-frame latents.

        Args:
            z: latents of a window `[B, T, N, D]`, T <= history (frame i sits at time position i).
            actions: the action taken from each frame `[B, T, frameskip*A]`.
            last_only: return only the prediction from the newest frame (cheaper).

        Returns:
            `[B, T, N, D]` (prediction of frame i+1 at index i), or `[B, N, D]` if last_only.
        """
        B, T, N, D = z.shape
        self._check(z, actions)
        a_emb = self.action_encoder(actions)  # [B, T, E]
        if self.config.conditioning == "concat":
            x = torch.cat([z, a_emb[:, :, None].expand(B, T, N, a_emb.shape[-1])], dim=-1)  # [B, T, N, D+E]
            cond = None
        else:
            x = z
            proprio = z[:, :, 0, D - self.proprio_dim :]  # [B, T, P]; repeated on every token
            cond = self.cond_proj(torch.cat([a_emb, proprio], dim=-1))  # [B, T, W]
        x = self.input_proj(x) + self.spatial_pos + self.time_pos[:, :T]  # [B, T, N, W]
        out = self.transform(x.reshape(B, T * N, -1), cond, T, last_only)  # [B, T*N or N, D]
        if last_only:
            return self.finish(out, z[:, -1], actions[:, -1])  # [B, N, D]
        return self.finish(out.view(B, T, N, D), z, actions)

    def finish(self, out: torch.Tensor, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The transformer's output `out [..., N, D]` for frames `z [..., N, D]` taken with `actions [..., A_fs]`
        -> the prediction: plus the per-token MLP's update, plus z itself if the predictor is residual."""
        if self.token_mlp is not None:
            out = out + self.token_mlp(z, actions)
        return out + z if self.config.residual else out

    def transform(self, x: torch.Tensor, cond, frames: int, last_only: bool = False) -> torch.Tensor:
        """Blocks, final norm and head on embedded tokens `x [B, T*N, W]` -> `[B, T*N or N, D]` (no residual)."""
        mask = self._mask(frames, x.device)
        for i, block in enumerate(self.blocks):
            x = block(x, cond, mask, frames, last_only=last_only and i == len(self.blocks) - 1)
        return self.head(self._final_norm(x, cond, frames))

    def _final_norm(self, x, cond, frames):
        if cond is None:
            return self.norm(x)
        B, L, W = x.shape
        shift, scale = self.final_modulation(F.silu(cond)).chunk(2, dim=-1)  # [B, T, W] each
        shift, scale = (m.repeat_interleave(self.num_tokens, dim=1)[:, -L:] for m in (shift, scale))
        return _modulate(self.norm(x), shift, scale)

    def _check(self, z, actions):
        B, T, N, D = z.shape
        if T > self.config.history or N != self.num_tokens or D != self.latent_dim:
            raise ValueError(
                f"z must be [B, T<={self.config.history}, {self.num_tokens}, {self.latent_dim}], got {tuple(z.shape)}"
            )
        a_fs = self.config.frameskip * self.action_dim
        if actions.shape != (B, T, a_fs):
            raise ValueError(f"actions must be [B, T, frameskip*A] = [{B}, {T}, {a_fs}], got {tuple(actions.shape)}")

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops_per_step(self, frames: int | None = None) -> int:
        """Analytic FLOPs (2 per multiply-add) of one `last_only` prediction for one candidate.

        Args:
            frames: context length T (default: history).
        """
        return sum(self.flops_breakdown(frames).values())

    def flops_breakdown(self, frames: int | None = None) -> dict[str, int]:
        """`flops_per_step` split into `linear` (all nn.Linear layers) and `attention` (QK^T, AV)."""
        cfg, N, D = self.config, self.num_tokens, self.latent_dim
        T, W, E = frames or cfg.history, cfg.width, cfg.action_emb_dim
        Hm, L, concat = int(W * cfg.mlp_ratio), T * N, cfg.conditioning == "concat"
        lin = 2 * T * cfg.frameskip * self.action_dim * E  # action encoder
        lin += 2 * L * (D + (E if concat else 0)) * W  # input projection
        if not concat:  # condition, per-block and final modulations: once per frame
            lin += 2 * T * (E + self.proprio_dim) * W + 2 * T * W * 6 * W * cfg.depth + 2 * T * W * 2 * W
        full = 2 * L * 3 * W * W + 2 * L * W * W + 4 * L * W * Hm  # qkv, proj, mlp on every token
        last = 2 * L * 2 * W * W + 2 * N * W * W + 2 * N * W * W + 4 * N * W * Hm  # kv all, q/proj/mlp newest
        lin += (cfg.depth - 1) * full + last + 2 * N * W * D  # ... + head
        lin += self.token_mlp.flops() if self.token_mlp is not None else 0
        pairs = N * N * T * (T + 1) // 2  # causal query-key pairs of a full block
        attn = (cfg.depth - 1) * 4 * pairs * W + 4 * N * L * W
        return {"linear": lin, "attention": attn}
