"""Readouts of physical quantities from frozen latents (linear, small-MLP or attentive probes).

Guardrails and evaluation read predicted quantities (e.g. the agent's xy) through a probe trained
on latents of real frames: `probe(z [..., N, D]) -> [..., K]`, differentiable, in physical units,
with named outputs. Targets are state columns by name, or `sin(name)` / `cos(name)` of an angle.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

__all__ = ["ProbeConfig", "ATTENTIVE_PROBE", "Probe", "AttentivePool", "fit_probe", "ridge_path_r2", "ridge_select_r2", "state_targets", "r2_score"]


@dataclass(frozen=True)
class ProbeConfig:
    """How a probe is built and fitted."""

    hidden: int = 0  # 0: linear readout of the flattened tokens (closed-form ridge); >0: MLP hidden width
    attentive: bool = False  # pool the tokens by attention first (V-JEPA's attentive probe); needs hidden > 0
    ridge: float = 1e-2  # L2 penalty of the linear probe, per sample, on standardised inputs
    steps: int = 500  # AdamW steps (MLP and attentive probes), learning rate decayed on a cosine
    lr: float = 3e-3  # AdamW peak learning rate (MLP and attentive probes)
    weight_decay: float = 1e-4  # AdamW weight decay (MLP and attentive probes)
    batch_size: int = 0  # frames per AdamW step (0: all of them)

    def __post_init__(self):
        if self.hidden < 0 or self.steps < 1 or self.lr <= 0 or self.ridge < 0 or self.batch_size < 0:
            raise ValueError("hidden must be >= 0, steps >= 1, lr > 0, ridge >= 0 and batch_size >= 0")
        _check_width(self.hidden, self.attentive)


class Probe(nn.Module):
    """Maps latents `[..., N, D]` to named quantities `[..., K]` (physical units).

    Args:
        num_tokens: tokens per frame N.
        latent_dim: latent width D.
        names: the K output names.
        hidden: width of the hidden layer (0 for a linear probe).
        seed: seed of the random initialisation.
        attentive: pool the tokens with learned queries first (`AttentivePool`, width `hidden`).
    """

    def __init__(self, num_tokens: int, latent_dim: int, names, hidden: int = 0, seed: int = 0, attentive: bool = False):
        super().__init__()
        _check_width(hidden, attentive)
        self.names, self.hidden, self.attentive = list(names), hidden, attentive
        self.num_tokens, self.latent_dim = num_tokens, latent_dim
        K, F_in = len(self.names), num_tokens * latent_dim
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if attentive:
                self.net = AttentivePool(num_tokens, latent_dim, hidden, K)
            elif hidden:
                self.net = nn.Sequential(nn.Linear(F_in, hidden), nn.GELU(), nn.Linear(hidden, K))
            else:
                self.net = nn.Sequential(nn.Linear(F_in, K))
        self.register_buffer("in_mean", torch.zeros(F_in))
        self.register_buffer("in_std", torch.ones(F_in))
        self.register_buffer("out_mean", torch.zeros(K))
        self.register_buffer("out_std", torch.ones(K))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = (z.flatten(-2) - self.in_mean) / self.in_std  # [..., N*D]
        if self.attentive:
            x = x.unflatten(-1, (self.num_tokens, self.latent_dim))  # [..., N, D]
        return self.net(x) * self.out_std + self.out_mean  # [..., K]

    def read(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """The outputs as a dict name -> `[...]`."""
        out = self(z)
        return {name: out[..., i] for i, name in enumerate(self.names)}

    def index(self, name: str) -> int:
        """Column of output `name`; a clear error listing the available names."""
        if name not in self.names:
            raise KeyError(f"probe has no output {name!r}; available: {self.names}")
        return self.names.index(name)

    def to_dict(self) -> dict:
        return {"names": self.names, "hidden": self.hidden, "attentive": self.attentive, "num_tokens": self.num_tokens,
                "latent_dim": self.latent_dim, "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()}}

    @classmethod
    def from_dict(cls, d: dict) -> "Probe":
        probe = cls(d["num_tokens"], d["latent_dim"], d["names"], d["hidden"], attentive=d.get("attentive", False))
        probe.load_state_dict(d["state_dict"])
        return probe


class AttentivePool(nn.Module):
    """Learned queries attend over the tokens, an MLP reads their outputs: ``[..., N, D] -> [..., K]``.

    A pose is a relation between patches (which ones hold the block, and where), which a linear map of
    the flattened tokens reads poorly; attention pooling (V-JEPA's attentive probe) can pick the
    patches first. Each token gets a learned position embedding, so the pooling knows where it looks.
    """

    num_queries, heads = 4, 4  # learned queries; attention heads (the width must divide by them)

    def __init__(self, num_tokens: int, latent_dim: int, width: int, outputs: int):
        super().__init__()
        self.embed = nn.Linear(latent_dim, width)  # inputs arrive standardised per feature
        self.pos = nn.Parameter(torch.zeros(num_tokens, width))
        self.mix = nn.Sequential(nn.GELU(), nn.Linear(width, width))
        self.queries = nn.Parameter(0.02 * torch.randn(self.num_queries, width))
        self.attn = nn.MultiheadAttention(width, self.heads, batch_first=True)
        self.head = nn.Sequential(nn.Linear(self.num_queries * width, 2 * width), nn.GELU(), nn.Linear(2 * width, outputs))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        lead = z.shape[:-2]
        x = self.embed(z.reshape(-1, *z.shape[-2:])) + self.pos  # [M, N, W]
        x = x + self.mix(x)
        pooled, _ = self.attn(self.queries.expand(len(x), -1, -1), x, x, need_weights=False)  # [M, Q, W]
        return self.head(pooled.flatten(1)).reshape(*lead, -1)  # [..., K]


def _check_width(hidden: int, attentive: bool) -> None:
    if attentive and (not hidden or hidden % AttentivePool.heads):
        raise ValueError(f"an attentive probe needs a hidden width (hidden > 0) divisible by {AttentivePool.heads}")


ATTENTIVE_PROBE = ProbeConfig(hidden=128, attentive=True, steps=1500, lr=1e-3, batch_size=256)
# push-T, 64 tokens of 128 features, 18,000 frames: ~5 min on 2 CPU threads; agent/block/angle R² 0.96/0.97/0.7


def state_targets(states: np.ndarray, state_names, targets) -> np.ndarray:
    """Columns `targets` of `states [..., S]`; `sin(name)`/`cos(name)` apply to an angle column.

    Raises:
        ValueError: a target names no state column.
    """
    state_names, cols = list(state_names), []
    for target in targets:
        m = re.fullmatch(r"(sin|cos)\((.+)\)", target)
        name = m.group(2) if m else target
        if name not in state_names:
            raise ValueError(f"probe target {target!r}: no state column {name!r}; columns are {state_names}")
        col = states[..., state_names.index(name)]
        cols.append(getattr(np, m.group(1))(col) if m else col)
    return np.stack(cols, axis=-1).astype(np.float32)


def r2_score(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Coefficient of determination per output column, `[M, K] -> [K]`."""
    ss_res = ((pred - target) ** 2).sum(0)
    ss_tot = ((target - target.mean(0)) ** 2).sum(0).clamp_min(1e-12)
    return 1 - ss_res / ss_tot


def fit_probe(z_train, y_train, z_val, y_val, names, config: ProbeConfig = ProbeConfig(), seed: int = 0,
              device: str = "cpu") -> tuple[Probe, dict[str, float]]:
    """Fit a probe on frozen latents and report held-out R² per output.

    Args:
        z_train, z_val: latents `[M, N, D]` (tensors or arrays).
        y_train, y_val: targets `[M, K]`.
        names: the K output names.
        config: probe size and optimisation.
        seed: seed of the initialisation and of the mini-batch draws.
        device: where to fit.

    Returns:
        The fitted probe (on `device`, eval mode) and `{name: R²}` on the validation set.
    """
    zt, yt, zv, yv = _tensors(z_train, y_train, z_val, y_val, device=device)
    probe = _standardising_probe(zt, yt, names, config.hidden, seed, config.attentive)
    if config.hidden:
        _fit_adam(probe, zt, yt, config, seed)
    else:
        gram, xty = _normal_equations(probe, zt, yt)
        _set_linear(probe, _ridge_solve(gram, xty, len(zt), config.ridge))
    probe.eval()
    with torch.no_grad():
        r2 = r2_score(probe(zv), yv)
    return probe, {name: float(v) for name, v in zip(names, r2)}


def ridge_path_r2(z_train, y_train, z_val, y_val, names, ridges, device: str = "cpu") -> dict[float, dict[str, float]]:
    """Held-out R² per output of the linear probe at each ridge penalty, `{ridge: {name: R²}}`.

    The same fit as `fit_probe(..., ProbeConfig(ridge=r))` for every `r`, but the normal equations
    are formed once: with many frames and every patch token that product is most of the work.
    """
    zt, yt, zv, yv = _tensors(z_train, y_train, z_val, y_val, device=device)
    probe = _standardising_probe(zt, yt, names, 0, 0)
    return _score_path(probe, *_normal_equations(probe, zt, yt), zv, yv, ridges)


def ridge_select_r2(z_train, y_train, z_val, y_val, names, ridges, select_fraction: float = 0.2,
                    device: str = "cpu") -> tuple[dict[str, float], dict[str, float]]:
    """Held-out R² per output of the linear probe with its penalty chosen on the training frames, and the penalties.

    The last `select_fraction` of the training frames score a fit on the rest at every penalty of
    `ridges`; each output's best penalty is then refitted on all training frames and scored on the
    held-out frames. The result is the two `ridge_path_r2` calls that describes, but the rows are
    multiplied once: the refit's normal equations follow exactly from the selection fit's by the
    change of standardisation, and are accumulated in chunks of rows, so a design of 100,000s of
    frames x 10,000 features needs neither a second pass nor its float64 copy in memory.
    """
    zt, yt, zv, yv = _tensors(z_train, y_train, z_val, y_val, device=device)
    k = int((1 - select_fraction) * len(zt))
    if not 0 < k < len(zt):
        raise ValueError(f"select_fraction={select_fraction} leaves no frames to fit or to select on ({len(zt)} frames)")
    inner = _standardising_probe(zt[:k], yt[:k], names, 0, 0)
    fit, held = _normal_equations(inner, zt[:k], yt[:k]), _normal_equations(inner, zt[k:], yt[k:])
    path = _score_path(inner, *fit, zt[k:], yt[k:], ridges)
    best = {n: max(ridges, key=lambda r: path[r][n]) for n in names}
    full = _standardising_probe(zt, yt, names, 0, 0)
    gram, xty = _restandardise(fit[0] + held[0], fit[1] + held[1], inner, full)
    scores = _score_path(full, gram, xty, zv, yv, sorted(set(best.values())))
    return {n: scores[best[n]][n] for n in names}, best


def _score_path(probe: Probe, gram: torch.Tensor, xty: torch.Tensor, zv, yv, ridges) -> dict[float, dict[str, float]]:
    scores, n = {}, int(round(gram[-1, -1].item()))  # the bias column's square sums to the number of rows
    for ridge in ridges:
        _set_linear(probe, _ridge_solve(gram, xty, n, ridge))
        with torch.no_grad():
            scores[ridge] = {name: float(v) for name, v in zip(probe.names, r2_score(probe(zv), yv))}
    return scores


def _normal_equations(probe: Probe, z: torch.Tensor, y: torch.Tensor, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """`X1ᵀX1 [F+1, F+1]` and `X1ᵀT [F+1, K]` of the standardised design, in float64, `chunk` rows at a time."""
    gram = xty = 0
    for i in range(0, len(z), chunk):
        x1, t = _design(probe, z[i : i + chunk], y[i : i + chunk])
        gram, xty = gram + x1.T @ x1, xty + x1.T @ t
    return gram, xty


def _restandardise(gram: torch.Tensor, xty: torch.Tensor, old: Probe, new: Probe) -> tuple[torch.Tensor, torch.Tensor]:
    """The normal equations of the same rows standardised by `new` instead of `old`.

    Each new column is an affine map of the old one, `x' = a x + b` (the bias column: a = 1, b = 0),
    and each new target `t' = c t + d`; the sums of products follow from the old sums, the column
    sums (the bias column's products) and the row count.
    """
    (xm0, xs0, tm0, ts0), (xm1, xs1, tm1, ts1) = ((p.in_mean.double(), p.in_std.double(), p.out_mean.double(),
                                                  p.out_std.double()) for p in (old, new))  # input, target mean and std
    a, b = torch.cat([xs0 / xs1, gram.new_ones(1)]), torch.cat([(xm0 - xm1) / xs1, gram.new_zeros(1)])  # [F+1]
    c, d = ts0 / ts1, (tm0 - tm1) / ts1  # [K]
    sx, st, n = gram[:, -1], xty[-1], gram[-1, -1]  # column sums of x and t, row count
    asx = a * sx
    gram = a[:, None] * gram * a[None] + torch.outer(asx, b) + torch.outer(b, asx) + n * torch.outer(b, b)
    xty = a[:, None] * xty * c + torch.outer(asx, d) + torch.outer(b, c * st) + n * torch.outer(b, d)
    return gram, xty


def _tensors(*arrays, device):
    return tuple(torch.as_tensor(np.asarray(a), dtype=torch.float32, device=device) for a in arrays)


def _standardising_probe(zt: torch.Tensor, yt: torch.Tensor, names, hidden: int, seed: int,
                         attentive: bool = False) -> Probe:
    """An unfitted probe whose input and output standardisation come from the training set."""
    probe = Probe(zt.shape[1], zt.shape[2], names, hidden, seed, attentive).to(zt.device)
    if attentive:  # one scale per feature shared by all tokens, so near-constant background patches
        per_feature = zt.flatten(0, 1)  # [M*N, D]; keep their small values instead of amplified noise
        mean, std = per_feature.mean(0).repeat(zt.shape[1]), per_feature.std(0).repeat(zt.shape[1])  # [N*D]
    else:
        flat = zt.flatten(1)  # [M, N*D]
        mean, std = flat.mean(0), flat.std(0)
    probe.in_mean.copy_(mean)
    probe.in_std.copy_(std.clamp_min(1e-6))
    probe.out_mean.copy_(yt.mean(0))
    probe.out_std.copy_(yt.std(0).clamp_min(1e-6))
    return probe


def _design(probe: Probe, z: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Standardised inputs with a bias column `[M, F+1]` and targets `[M, K]`, in float64."""
    x = ((z.flatten(1) - probe.in_mean) / probe.in_std).double()  # [M, F]
    t = ((y - probe.out_mean) / probe.out_std).double()  # [M, K]
    return torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype, device=x.device)], dim=1), t


def _ridge_solve(gram: torch.Tensor, xty: torch.Tensor, n: int, ridge: float) -> torch.Tensor:
    """Ridge weights `[F+1, K]` from the normal equations; the penalty is per sample, the bias is not penalised."""
    reg = ridge * n * torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    reg[-1, -1] = 0.0
    return torch.linalg.solve(gram + reg, xty)


def _set_linear(probe: Probe, w: torch.Tensor) -> None:
    with torch.no_grad():
        probe.net[0].weight.copy_(w[:-1].T.float())
        probe.net[0].bias.copy_(w[-1].float())


def _fit_adam(probe: Probe, z: torch.Tensor, y: torch.Tensor, config: ProbeConfig, seed: int = 0) -> None:
    """AdamW on the standardised squared error, full batch or seeded mini-batches, cosine-decayed rate."""
    opt = torch.optim.AdamW(probe.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, config.steps)
    gen = torch.Generator().manual_seed(seed)
    batch = config.batch_size if 0 < config.batch_size < len(z) else 0
    probe.train()
    for _ in range(config.steps):
        idx = torch.randint(len(z), (batch,), generator=gen).to(z.device) if batch else slice(None)
        loss = (((probe(z[idx]) - y[idx]) / probe.out_std) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        schedule.step()


def probe_config_dict(config: ProbeConfig) -> dict:
    return asdict(config)
