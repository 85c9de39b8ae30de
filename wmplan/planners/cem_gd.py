"""CEM then gradient refinement: a few CEM iterations find the basin, Adam polishes the best elites
(the hybrid studied in DINO-WM's planner ablation and in "CEM-GD", Huang et al. 2021).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from wmplan.planners.base import BestTracker, Planner, PlanResult, Problem
from wmplan.planners.cem import CEMConfig, CEMPlanner
from wmplan.planners.gd import GDConfig, GDPlanner
from wmplan.planners.settings import check_settings

__all__ = ["CEMGDConfig", "CEMGDPlanner"]


@dataclass(frozen=True)
class CEMGDConfig:
    """Settings of `CEMGDPlanner`: a short CEM stage, then GD from its best elites."""

    cem: CEMConfig = field(default_factory=lambda: CEMConfig(num_samples=200, num_elites=20, iterations=10))
    gd: GDConfig = field(default_factory=lambda: GDConfig(num_starts=4, iterations=20, lr=0.05, init_noise=0.0))

    def __post_init__(self):
        check_settings(self)  # a dict of settings becomes its config
        if self.gd.num_starts > self.cem.num_elites:
            raise ValueError(f"gd.num_starts ({self.gd.num_starts}) must be <= cem.num_elites ({self.cem.num_elites})")


class CEMGDPlanner(Planner):
    """CEM stage, then projected Adam started from the CEM best plan and its top elites."""

    needs_grad = True

    def __init__(self, config: CEMGDConfig = CEMGDConfig(), device: str | torch.device = "cpu"):
        super().__init__(device)
        self.config = config
        self._cem = CEMPlanner(config.cem, device)
        self._gd = GDPlanner(config.gd, device)

    def _optimise(self, problem: Problem) -> PlanResult:
        with torch.no_grad():
            coarse = self._cem._optimise(problem)
        best = BestTracker(problem)
        best.actions, best.cost, best.violation = coarse.actions, coarse.cost, coarse.violation
        best.history = list(coarse.history)
        problem.init = coarse.actions  # start 0 is the CEM best, then the elites in rank order
        self._gd.descend(problem, self._gd.starts(problem, coarse.elites), best)
        return best.result(elites=coarse.elites)
