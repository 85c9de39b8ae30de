"""The planner protocol, written once: objective and result types, validation, ranking, warm start.

A planner minimises an *objective* over action sequences. The objective maps candidates
``actions [B, N, H, A]`` (B environments, N candidates each, horizon H, action size A) to a
`CostOutput`. Every planner batches all B environments and N candidates into one objective call per
iteration, keeps candidates inside the action box, and is reproducible under a `torch.Generator`.
The receding-horizon loop and warm start (`shift_plan`) live here and in `wmplan.mpc`, never in a
planner file; a planner file holds only its update rule (`Planner._optimise`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

__all__ = [
    "CostOutput", "PlanResult", "Problem", "Planner", "Objective",
    "feasible_first_order", "best_index", "shift_plan", "randn", "colored_noise", "flops_per_replan",
]


@dataclass
class CostOutput:
    """What an objective returns for candidates ``[B, N, H, A]``.

    Attributes:
        total: ``[B, N]`` scalar cost to minimise (goal energy + penalty guardrails).
        terms: per-term breakdown ``{name: [B, N]}``; penalty terms sum to `total`, constraint
            terms sum to `violation` (see `modes`).
        violation: ``[B, N]`` >= 0, summed constraint violations; 0 means feasible.
        modes: ``{name: "penalty" | "constraint"}`` for each entry of `terms`.
    """

    total: torch.Tensor
    terms: dict = field(default_factory=dict)
    violation: Optional[torch.Tensor] = None
    modes: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.violation is None:
            self.violation = torch.zeros_like(self.total)


Objective = Callable[[torch.Tensor], CostOutput]


@dataclass
class PlanResult:
    """The outcome of one `Planner.plan` call.

    Attributes:
        actions: ``[B, H, A]`` best plan per environment (feasible-first, then lowest cost).
        cost: ``[B]`` its total cost.
        violation: ``[B]`` its constraint violation (0 = predicted feasible).
        history: ``[I, B]`` best total cost found so far after each of I iterations.
        predictor_calls: candidate-steps evaluated, sum over objective calls of B*N*H.
        grad_calls: the part of `predictor_calls` evaluated with autograd recording (gradient steps).
        objective_calls: number of objective evaluations (batched calls).
        wall_time: seconds spent in `plan`.
        elites: ``[B, K, H, A]`` final elite set (sampling planners) for the next warm start, or None.
    """

    actions: torch.Tensor
    cost: torch.Tensor
    violation: torch.Tensor
    history: torch.Tensor
    predictor_calls: int = 0
    grad_calls: int = 0
    objective_calls: int = 0
    wall_time: float = 0.0
    elites: Optional[torch.Tensor] = None


@dataclass
class Problem:
    """One validated planning problem, shared by all update rules (built by `Planner.plan`)."""

    objective: Objective
    batch_size: int  # B
    horizon: int  # H
    low: torch.Tensor  # [A]
    high: torch.Tensor  # [A]
    init: torch.Tensor  # [B, H, A] initial mean / start (centre of the box when not given)
    init_elites: Optional[torch.Tensor]  # [B, K, H, A] or None
    generator: torch.Generator | list  # one generator, or one per environment
    predictor_calls: int = 0
    grad_calls: int = 0  # candidate-steps evaluated with autograd recording
    objective_calls: int = 0

    @property
    def action_dim(self) -> int:
        return self.low.shape[0]

    @property
    def half_range(self) -> torch.Tensor:
        return (self.high - self.low) / 2

    def clamp(self, actions: torch.Tensor) -> torch.Tensor:
        """Project actions ``[..., A]`` onto the box."""
        return torch.maximum(torch.minimum(actions, self.high), self.low)

    def evaluate(self, actions: torch.Tensor) -> CostOutput:
        """Call the objective on ``[B, N, H, A]``, check its output and count predictor calls."""
        B, N, H, _ = actions.shape
        out = self.objective(actions)
        if not isinstance(out, CostOutput):
            raise TypeError(f"objective must return CostOutput, got {type(out).__name__}")
        for name, t in (("total", out.total), ("violation", out.violation)):
            if tuple(t.shape) != (B, N):
                raise ValueError(f"objective {name} must have shape [B, N] = {[B, N]}, got {list(t.shape)}")
        self.predictor_calls += B * N * H
        if torch.is_grad_enabled() and actions.requires_grad:
            self.grad_calls += B * N * H
        self.objective_calls += 1
        return out


def feasible_first_order(total: torch.Tensor, violation: torch.Tensor) -> torch.Tensor:
    """Indices ``[B, N]`` sorting candidates by (violation, cost): a candidate with violation > 0
    never outranks one with violation 0; among infeasible ones, less violation wins.
    """
    total = torch.nan_to_num(total, nan=math.inf)
    by_cost = torch.sort(total, dim=1, stable=True).indices  # [B, N]
    viol = torch.nan_to_num(violation, nan=math.inf).gather(1, by_cost)
    by_viol = torch.sort(viol, dim=1, stable=True).indices  # stable: ties keep cost order
    return by_cost.gather(1, by_viol)


def best_index(total: torch.Tensor, violation: torch.Tensor) -> torch.Tensor:
    """``[B]`` index of the feasible-first best candidate in ``[B, N]``."""
    return feasible_first_order(total, violation)[:, 0]


def _better(cost_a, viol_a, cost_b, viol_b) -> torch.Tensor:
    """``[B]`` bool: is (cost_a, viol_a) strictly better than (cost_b, viol_b) feasible-first."""
    return (viol_a < viol_b) | ((viol_a == viol_b) & (cost_a < cost_b))


class Planner:
    """Base class. Subclasses set `needs_grad` and implement `_optimise(problem) -> PlanResult`."""

    needs_grad: bool = False  # gradient planners need autograd through the world model

    def __init__(self, device: str | torch.device = "cpu"):
        self.device = torch.device(device)

    def plan(self, objective: Objective, batch_size: int, horizon: int, action_low, action_high,
             init: Optional[torch.Tensor] = None, generator: Optional[torch.Generator] = None,
             init_elites: Optional[torch.Tensor] = None) -> PlanResult:
        """Minimise `objective` over action sequences in the box ``[action_low, action_high]``.

        Args:
            objective: maps ``[B, N, H, A]`` candidates to a `CostOutput`.
            batch_size: B, number of independent problems (environments) planned together.
            horizon: H, planned steps.
            action_low, action_high: ``[A]`` box bounds (array-like).
            init: ``[B, H, A]`` warm start (e.g. `shift_plan` of the previous plan), or None.
            generator: a `torch.Generator`, or a list of B (one per environment: then a batched
                plan equals B separate plans). Same seed, same plan. Default: seed 0.
            init_elites: ``[B, K, H, A]`` shifted elites of the previous plan (iCEM), or None.

        Returns:
            `PlanResult` with the best plan per environment.

        Raises:
            ValueError: on inconsistent shapes, non-finite inputs or an empty box.
        """
        start = time.perf_counter()
        problem = self._problem(objective, batch_size, horizon, action_low, action_high, init, generator, init_elites)
        result = self._optimise(problem)
        result.predictor_calls, result.objective_calls = problem.predictor_calls, problem.objective_calls
        result.grad_calls = problem.grad_calls
        result.wall_time = time.perf_counter() - start
        return result

    def _optimise(self, problem: Problem) -> PlanResult:
        raise NotImplementedError

    def _problem(self, objective, B, H, low, high, init, generator, init_elites) -> Problem:
        if not callable(objective):
            raise ValueError("objective must be callable: actions [B, N, H, A] -> CostOutput")
        if int(B) < 1 or int(H) < 1:
            raise ValueError(f"batch_size and horizon must be >= 1, got {B} and {H}")
        low = torch.as_tensor(low, dtype=torch.float32, device=self.device).reshape(-1)
        high = torch.as_tensor(high, dtype=torch.float32, device=self.device).reshape(-1)
        if low.shape != high.shape or not (torch.isfinite(low).all() and torch.isfinite(high).all()):
            raise ValueError(f"action bounds must be finite and of equal shape, got {low.shape} and {high.shape}")
        if (low > high).any():
            raise ValueError("action_low must be <= action_high")
        shape = (int(B), int(H), low.shape[0])
        if init is None:
            init = ((low + high) / 2).expand(shape).clone()
        init = self._check(init, shape, "init")
        if init_elites is not None:
            init_elites = self._check(init_elites, (shape[0], init_elites.shape[1], *shape[1:]), "init_elites")
        if generator is None:
            generator = torch.Generator(device=self.device).manual_seed(0)
        elif isinstance(generator, (list, tuple)) and len(generator) != int(B):
            raise ValueError(f"got {len(generator)} generators for batch_size {B}")
        problem = Problem(objective, int(B), int(H), low, high, None, init_elites, generator)
        problem.init = problem.clamp(init)
        if init_elites is not None:
            problem.init_elites = problem.clamp(init_elites)
        return problem

    def _check(self, tensor, shape, name) -> torch.Tensor:
        tensor = torch.as_tensor(tensor, dtype=torch.float32, device=self.device)
        if tuple(tensor.shape) != tuple(shape):
            raise ValueError(f"{name} must have shape {list(shape)}, got {list(tensor.shape)}")
        if not torch.isfinite(tensor).all():
            raise ValueError(f"{name} contains NaN or inf")
        return tensor


class BestTracker:
    """Keeps the feasible-first best candidate per environment across iterations."""

    def __init__(self, problem: Problem):
        B = problem.batch_size
        self.actions = problem.init.clone()  # [B, H, A]
        self.cost = torch.full((B,), math.inf, device=problem.low.device)
        self.violation = torch.full((B,), math.inf, device=problem.low.device)
        self.history: list[torch.Tensor] = []

    def update(self, actions: torch.Tensor, out: CostOutput, order: Optional[torch.Tensor] = None) -> None:
        """Fold in candidates ``[B, N, H, A]`` with their costs; `order` may be precomputed."""
        idx = best_index(out.total, out.violation) if order is None else order[:, 0]  # [B]
        cost = torch.nan_to_num(out.total.gather(1, idx[:, None])[:, 0].detach(), nan=math.inf)
        viol = torch.nan_to_num(out.violation.gather(1, idx[:, None])[:, 0].detach(), nan=math.inf)
        better = _better(cost, viol, self.cost, self.violation)
        picked = actions[torch.arange(actions.shape[0], device=actions.device), idx].detach()  # [B, H, A]
        self.actions = torch.where(better[:, None, None], picked, self.actions)
        self.cost = torch.where(better, cost, self.cost)
        self.violation = torch.where(better, viol, self.violation)
        self.history.append(self.cost.clone())

    def result(self, elites: Optional[torch.Tensor] = None) -> PlanResult:
        return PlanResult(self.actions, self.cost, self.violation, torch.stack(self.history), elites=elites)


def shift_plan(actions: torch.Tensor, steps: int, pad: str = "last") -> torch.Tensor:
    """Warm start: drop the first `steps` executed steps of ``[..., H, A]`` and pad at the end.

    Args:
        actions: ``[..., H, A]`` previous plan (or elites ``[B, K, H, A]``).
        steps: planned steps executed since the plan was made (0 <= steps).
        pad: "last" repeats the final action, "zero" appends zeros.
    """
    if pad not in ("last", "zero"):
        raise ValueError(f"pad must be 'last' or 'zero', got {pad!r}")
    H = actions.shape[-2]
    steps = min(int(steps), H)
    kept = actions[..., steps:, :]  # [..., H-steps, A]
    fill = actions[..., -1:, :] if pad == "last" else torch.zeros_like(actions[..., -1:, :])
    return torch.cat([kept, fill.expand(*actions.shape[:-2], steps, actions.shape[-1])], dim=-2)


def randn(shape: tuple, generator, device=None) -> torch.Tensor:
    """Standard normal ``[B, ...]``; with a list of B generators, row b comes from generator b, so a
    batched plan equals B separate plans made with the same per-environment generators.
    """
    if isinstance(generator, (list, tuple)):
        if len(generator) != shape[0]:
            raise ValueError(f"got {len(generator)} generators for a batch of {shape[0]}")
        return torch.stack([torch.randn(tuple(shape[1:]), generator=g, device=device) for g in generator])
    return torch.randn(tuple(shape), generator=generator, device=device)


def colored_noise(shape: tuple, beta: float, generator, device=None) -> torch.Tensor:
    """Gaussian noise ``[..., H, A]`` with power spectrum ~ 1/f^beta along H (iCEM, Pinneri et al. 2020).

    beta = 0 is white noise; beta = 2 (red) gives smooth, temporally correlated action sequences.
    Each sequence is normalised to unit variance per dimension on average.
    """
    *lead, H, A = shape
    if beta == 0 or H < 2:
        return randn(shape, generator, device)
    freqs = torch.fft.rfftfreq(H, device=device)  # [F]
    freqs[0] = freqs[1]  # avoid the infinite DC amplitude; DC then behaves like the lowest frequency
    scale = freqs ** (-beta / 2)
    spec_shape = (*lead, A, freqs.shape[0])
    re, im = randn(spec_shape, generator, device), randn(spec_shape, generator, device)
    noise = torch.fft.irfft(torch.complex(re, im) * scale, n=H)  # [..., A, H]
    # irfft keeps only the real part of the DC (and, for even H, Nyquist) bins; the others count 4x.
    weight = torch.full_like(scale, 4.0)
    weight[0] = 1.0
    if H % 2 == 0:
        weight[-1] = 1.0
    sigma = math.sqrt(float((weight * scale**2).sum())) / H  # exact std of each output sample
    return (noise / sigma).transpose(-1, -2).contiguous()  # [..., H, A]


def flops_per_replan(world_model, result: PlanResult) -> Optional[float]:
    """FLOPs spent in the predictor for one re-plan: ``flops_per_step() x candidate-steps``.

    Candidate-steps evaluated with autograd recording (`PlanResult.grad_calls`) also run backward,
    which costs about twice the forward, so they count x3; CEM-GD's sampling stage counts x1.
    Returns None when the model does not report `flops_per_step()`.
    """
    per_step = getattr(world_model, "flops_per_step", None)
    if per_step is None:
        return None
    return float(per_step()) * (result.predictor_calls + 2 * result.grad_calls)
