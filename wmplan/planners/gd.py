"""Gradient-descent planning through the world model (DINO-WM's GD baseline; Adam, Kingma & Ba 2015).

Actions are optimised in box-normalised coordinates ``u = (a - centre) / half_range`` so one learning
rate fits every action scale; after each Adam step they are projected back onto the box. Several
starts (the warm start, any carried elites, then noisy copies of the warm start) descend in
parallel inside one batched objective call per step; the best iterate seen is returned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from wmplan.planners.base import BestTracker, Planner, PlanResult, Problem, randn
from wmplan.planners.settings import check_settings

__all__ = ["GDConfig", "GDPlanner"]


@dataclass(frozen=True)
class GDConfig:
    """Settings of `GDPlanner`."""

    num_starts: int = 8  # S, parallel starts per environment (multi-start)
    iterations: int = 50  # Adam steps per re-plan
    lr: float = 0.1  # Adam learning rate in units of the half action range
    final_lr: float = 0.05  # cosine-annealed final learning rate, as a fraction of `lr`
    betas: tuple[float, float] = (0.5, 0.9)  # Adam moment decays; less momentum than (0.9, 0.999) settles within ~50 steps
    init_noise: float = 0.5  # std of the extra starts around the warm start, fraction of half range
    violation_weight: float = 1e3  # cost added per unit of constraint violation

    def __post_init__(self):
        check_settings(self)  # types and finiteness; the ranges follow
        if self.num_starts < 1 or self.iterations < 1:
            raise ValueError(f"need num_starts >= 1 and iterations >= 1, got {self.num_starts}, {self.iterations}")
        if not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas}")
        if not 0 < self.final_lr <= 1:
            raise ValueError(f"final_lr must be in (0, 1], got {self.final_lr}")
        if self.lr <= 0 or self.init_noise < 0 or self.violation_weight < 0:
            raise ValueError("need lr > 0, init_noise >= 0, violation_weight >= 0")


class GDPlanner(Planner):
    """Multi-start projected Adam on the action sequence."""

    needs_grad = True

    def __init__(self, config: GDConfig = GDConfig(), device: str | torch.device = "cpu"):
        super().__init__(device)
        self.config = config

    def _optimise(self, problem: Problem) -> PlanResult:
        best = BestTracker(problem)
        self.descend(problem, self.starts(problem, problem.init_elites), best)
        return best.result()

    def starts(self, problem: Problem, seeds: torch.Tensor | None) -> torch.Tensor:
        """Starting sequences ``[B, S, H, A]``: warm start, then `seeds` ``[B, K, H, A]``, then noise."""
        S, B, H, A = self.config.num_starts, problem.batch_size, problem.horizon, problem.action_dim
        parts = [problem.init[:, None]] + ([seeds] if seeds is not None else [])
        n_fixed = sum(p.shape[1] for p in parts)
        noise = randn((B, max(S - n_fixed, 0), H, A), problem.generator, problem.low.device)
        parts.append(problem.init[:, None] + self.config.init_noise * problem.half_range * noise)
        return problem.clamp(torch.cat(parts, dim=1)[:, :S])

    def descend(self, problem: Problem, starts: torch.Tensor, best: BestTracker) -> None:
        """Run projected Adam from ``starts [B, S, H, A]``, folding every iterate into `best`."""
        cfg = self.config
        centre = (problem.low + problem.high) / 2
        half = problem.half_range.clamp_min(1e-8)
        b1, b2 = cfg.betas
        with torch.inference_mode(False), torch.enable_grad():
            centre, half = centre.clone(), half.clone()  # normal tensors even if made in inference mode
            u = ((starts.clone() - centre) / half).requires_grad_(True)  # [B, S, H, A] in [-1, 1]
            m, v = torch.zeros_like(u), torch.zeros_like(u)  # Adam moments, written out: no optimiser object
            for step in range(cfg.iterations + 1):
                last = step == cfg.iterations  # the last iterate is evaluated, not stepped: no graph
                actions = centre + half * u
                with torch.set_grad_enabled(not last):
                    out = problem.evaluate(actions)
                best.update(actions, out)
                if last:
                    break
                loss = (out.total + cfg.violation_weight * out.violation).sum()  # candidates are independent
                # autograd.grad, not backward: the world model's parameters get no .grad
                (grad,) = torch.autograd.grad(loss, u)
                grad = grad.nan_to_num(0.0)
                anneal = 0.5 * (1 + math.cos(math.pi * step / max(cfg.iterations - 1, 1)))
                lr = cfg.lr * (cfg.final_lr + (1 - cfg.final_lr) * anneal)
                with torch.no_grad():
                    m.mul_(b1).add_(grad, alpha=1 - b1)
                    v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
                    m_hat, v_hat = m / (1 - b1 ** (step + 1)), v / (1 - b2 ** (step + 1))
                    u.sub_(lr * m_hat / (v_hat.sqrt() + 1e-8)).clamp_(-1.0, 1.0)  # Adam step, then projection
