"""Planners behind one protocol (see `base.py`): CEM (default), iCEM, MPPI, gradient descent, CEM→GD.

>>> planner = make_planner("icem", num_samples=200, iterations=10)
>>> result = planner.plan(objective, batch_size=B, horizon=H, action_low=low, action_high=high)
"""

from __future__ import annotations

import dataclasses

from wmplan.planners.base import (
    CostOutput, Objective, Planner, PlanResult, best_index, colored_noise,
    feasible_first_order, flops_per_replan, shift_plan,
)
from wmplan.planners.cem import CEMConfig, CEMPlanner
from wmplan.planners.cem_gd import CEMGDConfig, CEMGDPlanner
from wmplan.planners.gd import GDConfig, GDPlanner
from wmplan.planners.mppi import MPPIConfig, MPPIPlanner

__all__ = [
    "PLANNERS", "make_planner", "replan_report", "CostOutput", "Objective", "Planner", "PlanResult",
    "CEMConfig", "CEMPlanner", "CEMGDConfig", "CEMGDPlanner", "GDConfig", "GDPlanner", "MPPIConfig",
    "MPPIPlanner", "best_index", "colored_noise", "feasible_first_order", "flops_per_replan", "shift_plan",
]

# iCEM (Pinneri et al. 2020): coloured noise, momentum, kept and carried-over elites. beta = 1 rather
# than the paper's 2-3: our horizons are short (H ~ 5), where red noise slows the final refinement.
ICEM_DEFAULTS = dict(noise_beta=1.0, momentum=0.1, keep_elites=0.3, carry_elites=True, iterations=20)

# name -> (planner class, config class, defaults overriding the config's own)
PLANNERS: dict[str, tuple[type, type, dict]] = {
    "cem": (CEMPlanner, CEMConfig, {}),
    "icem": (CEMPlanner, CEMConfig, ICEM_DEFAULTS),
    "mppi": (MPPIPlanner, MPPIConfig, {}),
    "gd": (GDPlanner, GDConfig, {}),
    "cem-gd": (CEMGDPlanner, CEMGDConfig, {}),
}


def make_planner(name: str, device: str = "cpu", **cfg) -> Planner:
    """Build a planner by name (`cem`, `icem`, `mppi`, `gd`, `cem-gd`) with config overrides.

    Args:
        name: registry name.
        device: torch device planning tensors live on.
        **cfg: fields of the planner's config dataclass (for `cem-gd`: `cem={...}`, `gd={...}`).

    Raises:
        ValueError: unknown name, unknown config field, or a value of the wrong type or range.
    """
    if name not in PLANNERS:
        raise ValueError(f"unknown planner {name!r}; known planners: {', '.join(PLANNERS)}")
    planner_cls, config_cls, defaults = PLANNERS[name]
    fields = {f.name for f in dataclasses.fields(config_cls)}
    unknown = set(cfg) - fields
    if unknown:
        raise ValueError(f"unknown {name} planner setting(s) {sorted(unknown)}; allowed: {sorted(fields)}")
    try:
        config = config_cls(**{**defaults, **cfg})
    except ValueError as err:  # say which planner the settings were for (they often come from the CLI)
        raise ValueError(f"{name} planner settings: {err}") from None
    return planner_cls(config, device=device)


def replan_report(world_model, result: PlanResult, peak_gflops: float | None = None) -> dict:
    """Benchmark numbers for one re-plan: candidate-steps, wall time, FLOPs, GFLOP/s, share of peak.

    FLOPs come from ``world_model.flops_per_step()`` x candidate-steps (x3 for those also run backward);
    they are None when the model does not report its cost.
    """
    flops = flops_per_replan(world_model, result)
    report = {
        "predictor_calls": result.predictor_calls,
        "grad_calls": result.grad_calls,
        "objective_calls": result.objective_calls,
        "wall_time_s": result.wall_time,
        "flops": flops,
        "gflops_per_s": None if flops is None or result.wall_time <= 0 else flops / result.wall_time / 1e9,
    }
    if peak_gflops and report["gflops_per_s"] is not None:
        report["fraction_of_peak"] = report["gflops_per_s"] / peak_gflops
    return report
