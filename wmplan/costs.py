"""Cost terms for latent planning: a goal energy and named guardrails that report their parts.

Every term maps a `CostContext` (candidate actions ``[B, N, H, A]``, predicted latents
``[B, N, H, P, D]``, goal latents ``[B, P, D]``) to an amount ``[B, N]``. A guardrail's amount is a
non-negative violation; in mode "penalty" it adds ``weight * amount`` to the total, in mode
"constraint" it adds ``amount`` to the violation used for feasible-first ranking. `CostSum` adds the
terms up and returns the per-term breakdown as a `CostOutput` (penalty terms sum to the total,
constraint terms to the violation), as Gymnasium's Pusher reports each reward term.

Guardrails on the agent's position read it from the predicted latents through a readout callable
``readout(z_pred [B, N, H, P, D]) -> [B, N, H, 2]`` (a probe on latents, or predicted proprio);
`probe_readout` builds one from a probe with named outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F

from wmplan.planners.base import CostOutput

__all__ = [
    "CostContext", "CostTerm", "CostSum", "GoalEnergy", "ReadoutGoal", "ActionBounds", "ActionRate", "KeepOut",
    "Workspace", "DataSupport", "probe_readout",
]

MODES = ("penalty", "constraint")


@dataclass
class CostContext:
    """Everything a term may read, for one batch of candidates; derived quantities are cached."""

    actions: torch.Tensor  # [B, N, H, A] planned actions (A = frameskip x env action dim)
    z_pred: Optional[torch.Tensor] = None  # [B, N, H, P, D] predicted latents
    z_goal: Optional[torch.Tensor] = None  # [B, P, D] goal latents
    prev_action: Optional[torch.Tensor] = None  # [B, A_env] last executed env action (rate limits)
    readout: Optional[Callable] = None  # z_pred -> [B, N, H, 2] agent position
    z_now: Optional[torch.Tensor] = None  # [B, P, D] latest real latent: where the predicted path starts
    at_end: Optional[bool] = None  # the candidates' last predicted state is the episode's last (None: unknown)
    cache: dict = field(default_factory=dict)

    def positions(self, readout: Optional[Callable] = None) -> torch.Tensor:
        """Predicted agent positions ``[B, N, H, 2]`` (computed once per readout and context)."""
        readout = readout or self.readout
        if readout is None or self.z_pred is None:
            raise ValueError("a position guardrail needs predicted latents and a readout (probe or proprio)")
        return self.read(readout)

    def read(self, readout: Callable) -> torch.Tensor:
        """``readout(z_pred)`` ``[B, N, H, K]``, computed once per readout and context."""
        if self.z_pred is None:
            raise ValueError("reading quantities needs predicted latents z_pred")
        key = ("read", id(readout))
        if key not in self.cache:
            self.cache[key] = readout(self.z_pred)
        return self.cache[key]

    def path(self, readout: Optional[Callable] = None) -> torch.Tensor:
        """The agent's path ``[B, N, H + 1, 2]``: its current position, then the predicted ones.

        Without `z_now` (a context built outside the MPC loop) the path is the predicted positions.
        """
        pos = self.positions(readout)  # [B, N, H, 2]
        if self.z_now is None:
            return pos
        readout = readout or self.readout
        key = ("path", id(readout))
        if key not in self.cache:
            now = readout(self.z_now[:, None, None].to(pos))  # [B, 1, 1, 2]
            self.cache[key] = torch.cat([now.expand(*pos.shape[:2], 1, 2), pos], dim=2)
        return self.cache[key]


class CostTerm:
    """A named term. Subclasses implement `amount(ctx) -> [B, N]`.

    A penalty's `early_weight` replaces its `weight` while the plan ends before the episode does
    (``ctx.at_end`` False, known when the MPC loop has a step budget): a goal part the agent can
    still reach after the plan's end, such as its own position in push-T, may count less mid-episode
    than in the plan that ends the episode. None: `weight` throughout.
    """

    def __init__(self, name: str, weight: float = 1.0, mode: str = "penalty", early_weight: Optional[float] = None):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if not weight >= 0 or (early_weight is not None and not early_weight >= 0):
            raise ValueError(f"weight and early_weight must be >= 0, got {weight}, {early_weight}")
        if early_weight is not None and mode != "penalty":
            raise ValueError("early_weight applies to penalties (a constraint has no weight)")
        self.name, self.weight, self.mode = name, float(weight), mode
        self.early_weight = None if early_weight is None else float(early_weight)

    def weight_in(self, ctx: CostContext) -> float:
        """The weight for this context: `early_weight` when the plan is known to end before the episode."""
        return self.early_weight if self.early_weight is not None and ctx.at_end is False else self.weight

    def amount(self, ctx: CostContext) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}(name={self.name!r}, weight={self.weight}, mode={self.mode!r})"


class CostSum:
    """Weighted sum of terms; callable on a `CostContext`, returns a `CostOutput` with the breakdown."""

    def __init__(self, terms: Sequence[CostTerm]):
        names = [t.name for t in terms]
        if len(set(names)) != len(names):
            raise ValueError(f"cost term names must be unique, got {names}")
        self.terms = list(terms)

    def __call__(self, ctx: CostContext) -> CostOutput:
        total = violation = torch.zeros(ctx.actions.shape[:2], device=ctx.actions.device)
        parts, modes = {}, {}
        for term in self.terms:
            amount = term.amount(ctx)  # [B, N]
            if term.mode == "penalty":
                parts[term.name] = term.weight_in(ctx) * amount
                total = total + parts[term.name]
            else:
                parts[term.name] = amount
                violation = violation + amount
            modes[term.name] = term.mode
        return CostOutput(total, parts, violation, modes)

    @property
    def needs_latents(self) -> bool:
        return any(getattr(t, "needs_latents", True) for t in self.terms)


def _step_weights(H: int, steps, device) -> torch.Tensor:
    """``[H]`` weights over predicted steps: "last", "all" (uniform) or explicit, normalised to sum 1."""
    if steps == "last":
        w = torch.zeros(H, device=device)
        w[-1] = 1.0
    elif steps == "all":
        w = torch.ones(H, device=device)
    else:
        w = torch.as_tensor(steps, dtype=torch.float32, device=device)
        if w.shape != (H,) or (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"step weights must be {H} non-negative numbers with positive sum, got {steps}")
    return w / w.sum()


class GoalEnergy(CostTerm):
    """Distance between predicted and goal latents (DINO-WM: MSE at the last step).

    Args:
        distance: "l2" (mean squared error) or "l1" (mean absolute error) over tokens and features.
        steps: "last", "all" (uniform over the horizon) or H explicit weights.
        features: optional ``(start, stop)`` slice of D, e.g. the visual part only when proprio
            embeddings are concatenated to the patch features.
    """

    def __init__(self, name="goal", weight=1.0, distance="l2", steps="last", features: Optional[tuple] = None,
                 early_weight: Optional[float] = None):
        super().__init__(name, weight, "penalty", early_weight)
        if distance not in ("l2", "l1"):
            raise ValueError(f"distance must be 'l2' or 'l1', got {distance!r}")
        self.distance, self.steps, self.features = distance, steps, features

    def amount(self, ctx):
        if ctx.z_pred is None or ctx.z_goal is None:
            raise ValueError("GoalEnergy needs predicted latents z_pred and a goal latent z_goal")
        z, g = ctx.z_pred, ctx.z_goal[:, None, None]  # [B, N, H, P, D], [B, 1, 1, P, D]
        if self.features is not None:
            z, g = z[..., slice(*self.features)], g[..., slice(*self.features)]
        loss = F.mse_loss if self.distance == "l2" else F.l1_loss  # fused: one pass over z, not three
        per_step = loss(z, g.expand_as(z), reduction="none").mean((-1, -2))  # [B, N, H]
        return per_step @ _step_weights(per_step.shape[-1], self.steps, per_step.device)


class ReadoutGoal(CostTerm):
    """Squared distance between quantities read from the predicted and the goal latents.

    A latent distance weighs every feature alike, so a small object that decides the task (push-T's
    block) can count for little beside the agent. This term compares what a readout extracts
    instead, e.g. the block's position read by the world model's probe; it stays in representation
    space (the readout sees latents only) and is differentiable for the gradient planners.

    Args:
        readout: ``z [..., P, D] -> [..., K]``, e.g. ``probe_readout(probe, ("block_x", "block_y"))``.
        scale: ``[K]`` (or one float) that divides each quantity's difference (units -> unitless).
        steps: "last", "all" (uniform over the horizon) or H explicit weights.
    """

    def __init__(self, readout: Callable, name="readout_goal", weight=1.0, scale=1.0, steps="last"):
        super().__init__(name, weight, "penalty")
        scale = torch.as_tensor(scale, dtype=torch.float32)
        if not bool((scale > 0).all()):
            raise ValueError(f"scale must be positive, got {scale.tolist()}")
        self.readout, self.scale, self.steps = readout, scale, steps

    def amount(self, ctx):
        if ctx.z_goal is None:
            raise ValueError("ReadoutGoal needs a goal latent z_goal")
        pred, goal = ctx.read(self.readout), self.readout(ctx.z_goal)  # [B, N, H, K], [B, K]
        per_step = ((pred - goal[:, None, None]) / self.scale.to(pred)).pow(2).mean(-1)  # [B, N, H]
        return per_step @ _step_weights(per_step.shape[-1], self.steps, per_step.device)


def _env_actions(actions: torch.Tensor, env_action_dim: Optional[int]) -> torch.Tensor:
    """Split planned steps ``[B, N, H, fs*A]`` into env actions ``[B, N, H*fs, A]``."""
    if env_action_dim is None:
        return actions
    B, N, H, A_fs = actions.shape
    if A_fs % env_action_dim:
        raise ValueError(f"planned action size {A_fs} is not a multiple of env action size {env_action_dim}")
    return actions.reshape(B, N, H * (A_fs // env_action_dim), env_action_dim)


class ActionBounds(CostTerm):
    """Box and/or norm bounds on env actions: summed excess over all steps.

    Args:
        low, high: ``[A_env]`` box (or None).
        max_norm: bound on the L2 norm of each env action (or None).
        env_action_dim: env action size A when planned steps hold frameskip actions; None = as planned.
    """

    needs_latents = False

    def __init__(self, name="action_bounds", weight=1.0, mode="penalty", low=None, high=None,
                 max_norm: Optional[float] = None, env_action_dim: Optional[int] = None):
        super().__init__(name, weight, mode)
        self.low = None if low is None else torch.as_tensor(low, dtype=torch.float32)
        self.high = None if high is None else torch.as_tensor(high, dtype=torch.float32)
        self.max_norm, self.env_action_dim = max_norm, env_action_dim

    def amount(self, ctx):
        a = _env_actions(ctx.actions, self.env_action_dim)  # [B, N, T, A]
        excess = torch.zeros(a.shape[:2], device=a.device)
        if self.high is not None:
            excess = excess + (a - self.high.to(a.device)).clamp_min(0).sum((-1, -2))
        if self.low is not None:
            excess = excess + (self.low.to(a.device) - a).clamp_min(0).sum((-1, -2))
        if self.max_norm is not None:
            excess = excess + (a.norm(dim=-1) - self.max_norm).clamp_min(0).sum(-1)
        return excess


class ActionRate(CostTerm):
    """Rate (smoothness) limit: summed excess of ``|a_t - a_{t-1}|`` over `max_delta`, per env step.

    The first difference is taken against the last executed action when the context has one.
    With ``max_delta=0`` and ``power=2`` this is the usual squared-difference smoothness penalty.
    """

    needs_latents = False

    def __init__(self, name="action_rate", weight=1.0, mode="penalty", max_delta: float = 0.0,
                 power: int = 1, env_action_dim: Optional[int] = None):
        super().__init__(name, weight, mode)
        if max_delta < 0 or power not in (1, 2):
            raise ValueError(f"need max_delta >= 0 and power in (1, 2), got {max_delta}, {power}")
        self.max_delta, self.power, self.env_action_dim = max_delta, power, env_action_dim

    def amount(self, ctx):
        a = _env_actions(ctx.actions, self.env_action_dim)  # [B, N, T, A]
        if ctx.prev_action is not None and ctx.prev_action.shape[-1] == a.shape[-1]:
            prev = ctx.prev_action.to(a)[:, None, None].expand(*a.shape[:2], 1, a.shape[-1])
            a = torch.cat([prev, a], dim=2)
        excess = ((a[:, :, 1:] - a[:, :, :-1]).abs() - self.max_delta).clamp_min(0)  # [B, N, T-1, A]
        return excess.pow(self.power).sum((-1, -2))


class KeepOut(CostTerm):
    """Keep-out discs for the agent's predicted path: summed penetration depth.

    A planned step spans `frameskip` env steps, so with ``swept=True`` (default) the depth is taken
    on each straight segment between consecutive positions of the path (the current position, then
    the predicted ones): a plan whose points lie outside a disc but whose path cuts through it
    violates. With ``swept=False`` only the predicted points count. A path that starts inside a disc
    is charged only for going deeper than the agent already is, so leaving is always feasible.

    Args:
        centers: ``[K, 2]`` disc centres; radii: ``[K]`` (or one float); margin: extra clearance.
        readout: position readout for this term (default: the context's).
    """

    def __init__(self, name="keep_out", weight=1.0, mode="constraint", centers=((0.0, 0.0),), radii=0.1,
                 margin: float = 0.0, readout: Optional[Callable] = None, swept: bool = True):
        super().__init__(name, weight, mode)
        self.centers = torch.as_tensor(centers, dtype=torch.float32).reshape(-1, 2)
        self.radii = torch.as_tensor(radii, dtype=torch.float32).expand(self.centers.shape[0]).clone()
        self.margin, self.readout, self.swept = margin, readout, swept

    def amount(self, ctx):
        c, reach = self.centers.to(ctx.actions), self.radii.to(ctx.actions) + self.margin  # [K, 2], [K]
        if not self.swept:
            dist = (ctx.positions(self.readout)[..., None, :] - c).norm(dim=-1)  # [B, N, H, K]
            return (reach - dist).clamp_min(0).sum((-1, -2))
        path = ctx.path(self.readout)  # [B, N, H + 1, 2] from the current position (H without z_now)
        depth = (reach - _segment_distance(path, c)).clamp_min(0)  # [B, N, H', K]
        if ctx.z_now is not None and path.shape[-2] > 1:
            # where the agent already is is no plan's fault: the first segment counts only the depth
            # beyond the current one, so every way out of a disc the agent is in is feasible
            now = (reach - (path[..., :1, :][..., None, :] - c).norm(dim=-1)).clamp_min(0)  # [B, N, 1, K]
            depth = torch.cat([(depth[..., :1, :] - now).clamp_min(0), depth[..., 1:, :]], dim=-2)
        return depth.sum((-1, -2))


def _segment_distance(path: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Distance from each point ``[K, 2]`` to each segment of `path` ``[..., L, 2]``: ``[..., L-1, K]``.

    A one-point path gives the distances to that point ``[..., 1, K]``.
    """
    if path.shape[-2] == 1:
        return (path[..., None, :] - points).norm(dim=-1)
    p0, d = path[..., :-1, None, :], (path[..., 1:, :] - path[..., :-1, :])[..., None, :]  # [..., L-1, 1, 2]
    t = (((points - p0) * d).sum(-1) / (d * d).sum(-1).clamp_min(1e-12)).clamp(0, 1)  # [..., L-1, K]
    return (p0 + t[..., None] * d - points).norm(dim=-1)


class Workspace(CostTerm):
    """Axis-aligned workspace ``[low, high]`` for the agent's predicted position: summed excess."""

    def __init__(self, name="workspace", weight=1.0, mode="constraint", low=(-1.0, -1.0), high=(1.0, 1.0),
                 readout: Optional[Callable] = None):
        super().__init__(name, weight, mode)
        self.low = torch.as_tensor(low, dtype=torch.float32)
        self.high = torch.as_tensor(high, dtype=torch.float32)
        self.readout = readout

    def amount(self, ctx):
        pos = ctx.positions(self.readout)  # [B, N, H, 2]
        out = (pos - self.high.to(pos)).clamp_min(0) + (self.low.to(pos) - pos).clamp_min(0)
        return out.sum((-1, -2))


class DataSupport(CostTerm):
    """Penalty for leaving the training distribution: z-scores beyond `max_z` of the data statistics.

    Args:
        mean, std: per-feature statistics of the training data (``[A]`` for actions, ``[D]`` for
            token-averaged latents).
        on: "actions" or "latents".
        max_z: z-score tolerated without cost.
    """

    def __init__(self, name="data_support", weight=1.0, mode="penalty", mean=0.0, std=1.0, on="actions",
                 max_z: float = 3.0):
        super().__init__(name, weight, mode)
        if on not in ("actions", "latents"):
            raise ValueError(f"on must be 'actions' or 'latents', got {on!r}")
        self.mean = torch.as_tensor(mean, dtype=torch.float32)
        self.std = torch.as_tensor(std, dtype=torch.float32).clamp_min(1e-8)
        self.on, self.max_z = on, max_z
        self.needs_latents = on == "latents"

    def amount(self, ctx):
        if self.on == "actions":
            x = ctx.actions  # [B, N, H, A]
        elif ctx.z_pred is None:
            raise ValueError("DataSupport(on='latents') needs predicted latents")
        else:
            x = ctx.z_pred.mean(-2)  # [B, N, H, D] token-averaged
        z = (x - self.mean.to(x)) / self.std.to(x)
        return (z.abs() - self.max_z).clamp_min(0).mean(-1).sum(-1)


def probe_readout(probe: Callable, names: Sequence = ("agent_x", "agent_y")) -> Callable:
    """A position readout from a probe ``probe(z [..., P, D]) -> [..., K]`` with named outputs.

    `names` are output names (looked up in ``probe.output_names`` or ``probe.names``) or indices.
    """
    labels = getattr(probe, "output_names", None) or getattr(probe, "names", None)
    index = []
    for n in names:
        if isinstance(n, int):
            index.append(n)
        elif labels is None or n not in list(labels):
            raise ValueError(f"probe has no output named {n!r}; outputs: {labels}")
        else:
            index.append(list(labels).index(n))

    def readout(z_pred: torch.Tensor) -> torch.Tensor:
        return probe(z_pred)[..., index]  # [B, N, H, len(names)]

    return readout
