"""Cross-entropy method (Rubinstein 1999; as used by PlaNet and DINO-WM), with the iCEM options of
Pinneri et al. 2020: coloured (1/f^beta) sampling noise, elites kept between iterations, shifted
elites carried over from the previous re-plan, and the mean evaluated as a candidate.

Elites are ranked feasible-first: a candidate that violates a constraint never outranks a feasible one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from wmplan.planners.base import BestTracker, Planner, PlanResult, Problem, colored_noise, feasible_first_order
from wmplan.planners.settings import check_settings

__all__ = ["CEMConfig", "CEMPlanner"]


@dataclass(frozen=True)
class CEMConfig:
    """Settings of `CEMPlanner`; the iCEM options default to plain CEM."""

    num_samples: int = 300  # N, candidate sequences per environment per iteration
    num_elites: int = 30  # K, candidates whose mean/std define the next sampling distribution
    iterations: int = 30  # refinement iterations per re-plan
    init_std: float = 1.0  # initial std as a fraction of the half action range
    min_std: float = 0.02  # std floor as a fraction of the half action range (keeps exploring)
    momentum: float = 0.0  # weight of the old mean/std in each update (iCEM alpha); 0 = plain CEM
    noise_beta: float = 0.0  # coloured-noise exponent along time; 0 white, 2-3 smooth (iCEM)
    keep_elites: float = 0.0  # fraction of elites re-inserted into the next iteration's samples (iCEM)
    carry_elites: bool = False  # accept shifted elites of the previous re-plan as candidates (iCEM)

    def __post_init__(self):
        check_settings(self)  # types and finiteness; the ranges follow
        if not 1 <= self.num_elites <= self.num_samples:
            raise ValueError(f"need 1 <= num_elites <= num_samples, got {self.num_elites} and {self.num_samples}")
        if self.iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {self.iterations}")
        if not 0 < self.min_std <= self.init_std:
            raise ValueError(f"need 0 < min_std <= init_std, got {self.min_std} and {self.init_std}")
        if not 0 <= self.momentum < 1 or not 0 <= self.keep_elites <= 1 or self.noise_beta < 0:
            raise ValueError("need 0 <= momentum < 1, 0 <= keep_elites <= 1, noise_beta >= 0")
        if self.num_elites_kept + 1 >= self.num_samples:
            raise ValueError("kept elites plus the mean must leave room for fresh samples")

    @property
    def num_elites_kept(self) -> int:
        return int(round(self.keep_elites * self.num_elites))


class CEMPlanner(Planner):
    """Sample around a Gaussian, refit it to the elites, repeat; return the best candidate seen."""

    def __init__(self, config: CEMConfig = CEMConfig(), device: str | torch.device = "cpu"):
        super().__init__(device)
        self.config = config

    def _optimise(self, problem: Problem) -> PlanResult:
        cfg, gen = self.config, problem.generator
        B, H, A, N, K = problem.batch_size, problem.horizon, problem.action_dim, cfg.num_samples, cfg.num_elites
        mean = problem.init  # [B, H, A]
        std = (cfg.init_std * problem.half_range).expand(B, H, A).clone()
        min_std = cfg.min_std * problem.half_range
        reused = problem.init_elites if cfg.carry_elites else None  # [B, K', H, A] or None
        best, elites = BestTracker(problem), None
        for _ in range(cfg.iterations):
            samples = self._sample(problem, mean, std, reused, N, gen)  # [B, N, H, A]
            out = problem.evaluate(samples)
            order = feasible_first_order(out.total, out.violation)  # [B, N]
            best.update(samples, out, order)
            elites = samples.gather(1, order[:, :K, None, None].expand(B, K, H, A))  # [B, K, H, A]
            mean = cfg.momentum * mean + (1 - cfg.momentum) * elites.mean(1)
            std = cfg.momentum * std + (1 - cfg.momentum) * elites.std(1, unbiased=False)
            std = torch.maximum(std, min_std)
            reused = elites[:, : cfg.num_elites_kept] if cfg.num_elites_kept else None
        return best.result(elites=elites)

    def _sample(self, problem, mean, std, reused, N, gen) -> torch.Tensor:
        """Candidates ``[B, N, H, A]``: the mean, any re-used elites, then fresh Gaussian samples."""
        B, H, A = mean.shape
        fixed = [mean[:, None]] + ([reused] if reused is not None else [])
        n_fixed = sum(f.shape[1] for f in fixed)
        fresh = max(N - n_fixed, 0)
        noise = colored_noise((B, fresh, H, A), self.config.noise_beta, gen, device=mean.device)
        samples = torch.cat(fixed + [mean[:, None] + std[:, None] * noise], dim=1)[:, :N]
        return problem.clamp(samples)
