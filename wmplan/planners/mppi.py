"""Model predictive path integral control (Williams et al. 2017), iterated as in TD-MPC.

Each iteration samples Gaussian perturbations around the mean and moves the mean to the
exponentially weighted average ``w_i ∝ exp(-(c_i - min c) / (lambda * std c))``. Costs are scaled by
their per-environment spread so that `temperature` means the same thing for any cost scale.
Constraint violations enter as ``total + violation_weight * violation``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from wmplan.planners.base import BestTracker, Planner, PlanResult, Problem, colored_noise
from wmplan.planners.settings import check_settings

__all__ = ["MPPIConfig", "MPPIPlanner"]


@dataclass(frozen=True)
class MPPIConfig:
    """Settings of `MPPIPlanner`."""

    num_samples: int = 300  # N, candidate sequences per environment per iteration
    iterations: int = 10  # refinement iterations per re-plan
    temperature: float = 0.3  # lambda, in units of the per-environment cost std; small = greedy
    init_std: float = 1.0  # initial std as a fraction of the half action range
    min_std: float = 0.02  # std floor as a fraction of the half action range
    adapt_std: bool = True  # refit the std to the weighted samples (TD-MPC); False keeps init_std
    noise_beta: float = 0.0  # coloured-noise exponent along time (0 = white)
    violation_weight: float = 1e3  # cost added per unit of constraint violation

    def __post_init__(self):
        check_settings(self)  # types and finiteness; the ranges follow
        if self.num_samples < 2 or self.iterations < 1:
            raise ValueError(f"need num_samples >= 2 and iterations >= 1, got {self.num_samples}, {self.iterations}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not 0 < self.min_std <= self.init_std:
            raise ValueError(f"need 0 < min_std <= init_std, got {self.min_std} and {self.init_std}")
        if self.noise_beta < 0 or self.violation_weight < 0:
            raise ValueError("noise_beta and violation_weight must be >= 0")


class MPPIPlanner(Planner):
    """Information-theoretic MPC: softmin-weighted averaging of sampled action sequences."""

    def __init__(self, config: MPPIConfig = MPPIConfig(), device: str | torch.device = "cpu"):
        super().__init__(device)
        self.config = config

    def _optimise(self, problem: Problem) -> PlanResult:
        cfg, gen = self.config, problem.generator
        B, H, A, N = problem.batch_size, problem.horizon, problem.action_dim, cfg.num_samples
        mean = problem.init  # [B, H, A]
        std = (cfg.init_std * problem.half_range).expand(B, H, A).clone()
        min_std = cfg.min_std * problem.half_range
        best = BestTracker(problem)
        for _ in range(cfg.iterations):
            noise = colored_noise((B, N - 1, H, A), cfg.noise_beta, gen, device=mean.device)
            samples = problem.clamp(torch.cat([mean[:, None], mean[:, None] + std[:, None] * noise], 1))  # [B, N, H, A]
            out = problem.evaluate(samples)
            best.update(samples, out)
            weights = self._weights(out.total + cfg.violation_weight * out.violation)  # [B, N]
            w = weights[:, :, None, None]
            mean = (w * samples).sum(1)
            if cfg.adapt_std:
                std = torch.maximum(((w * (samples - mean[:, None]) ** 2).sum(1)).sqrt(), min_std)
        return best.result()

    def _weights(self, cost: torch.Tensor) -> torch.Tensor:
        """Softmin weights ``[B, N]`` over candidates, NaN costs get weight 0."""
        cost = torch.nan_to_num(cost, nan=torch.inf, posinf=torch.inf)
        finite = torch.isfinite(cost)
        shifted = cost - cost.masked_fill(~finite, torch.inf).amin(1, keepdim=True)
        spread = shifted.masked_fill(~finite, 0).std(1, keepdim=True).clamp_min(1e-8)
        return torch.softmax(-shifted / (self.config.temperature * spread), dim=1)
