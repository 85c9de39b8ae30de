"""Planners reach known optima of analytic problems, respect bounds and constraints, and are
reproducible and batch-independent."""

import time

import pytest
import torch

from wmplan.costs import CostSum, GoalEnergy, KeepOut
from wmplan.mpc import LatentObjective
from wmplan.planners import (
    PLANNERS, CEMConfig, CostOutput, PlanResult, feasible_first_order, flops_per_replan, make_planner,
    replan_report, shift_plan,
)

torch.set_num_threads(1)
NAMES = list(PLANNERS)
# max |a - a*| after the default settings, per planner (GD: 50 Adam steps)
TOLERANCE = {"cem": 0.02, "icem": 0.02, "mppi": 0.02, "gd": 1e-3, "cem-gd": 1e-3}


def gens(B, seed=0):
    return [torch.Generator().manual_seed(seed + b) for b in range(B)]


def quadratic(target):
    """Objective sum_t |a_t - a*_t|^2 for targets ``[B, H, A]``."""

    def objective(actions):  # [B, N, H, A]
        total = (actions - target[:, None]).square().sum((-1, -2))
        return CostOutput(total, {"quadratic": total}, modes={"quadratic": "penalty"})

    return objective


class PointMass:
    """Linear latent dynamics z_{t+1} = z_t + dt * a_t, one token holding the 2-D position."""

    frameskip, action_dim, history, device = 1, 2, 1, "cpu"

    def __init__(self, dt=0.1):
        self.dt = dt

    def rollout(self, z_hist, actions, a_past=None):  # [B, T, 1, 2], [B, H, 2] -> [B, H, 1, 2]
        return z_hist[:, -1:] + self.dt * torch.cumsum(actions, dim=1)[:, :, None, :]

    def flops_per_step(self):
        return 4.0


def point_mass_objective(start, goal, terms=None, dt=0.1):
    z0 = torch.as_tensor(start, dtype=torch.float32).reshape(-1, 1, 1, 2)  # [B, T=1, P=1, D=2]
    zg = torch.as_tensor(goal, dtype=torch.float32).reshape(-1, 1, 2)
    costs = CostSum(terms or [GoalEnergy(steps="last")])
    return LatentObjective(PointMass(dt), costs, z0, zg, readout=lambda z: z[..., 0, :])


@pytest.mark.parametrize("name", NAMES)
def test_reaches_quadratic_optimum(name):
    H, A = 6, 2
    target = torch.stack([torch.linspace(-0.6, 0.6, H * A).reshape(H, A), 0.3 * torch.ones(H, A)])  # [B=2, H, A]
    planner = make_planner(name)
    result = planner.plan(quadratic(target), 2, H, -torch.ones(A), torch.ones(A), generator=gens(2))
    assert isinstance(result, PlanResult) and result.actions.shape == (2, H, A)
    assert (result.actions - target).abs().max() < TOLERANCE[name]
    assert result.cost.shape == (2,) and (result.cost < 1e-3).all()
    assert (result.history[1:] <= result.history[:-1]).all(), "best-so-far cost must not increase"
    assert result.predictor_calls > 0 and result.objective_calls > 0


@pytest.mark.parametrize("name", NAMES)
def test_steers_point_mass_to_goal(name):
    start, goal = [[0.0, 0.0], [0.2, -0.1]], [[0.3, -0.25], [-0.2, 0.2]]
    objective = point_mass_objective(start, goal)
    result = make_planner(name).plan(objective, 2, 5, -torch.ones(2), torch.ones(2), generator=gens(2))
    final = objective.rollout(result.actions[:, None])[:, 0, -1, 0]  # [B, 2]
    assert (final - torch.tensor(goal)).norm(dim=-1).max() < 0.02


@pytest.mark.parametrize("name", NAMES)
def test_bounds_respected_when_optimum_outside_box(name):
    H, A = 4, 3
    low, high = torch.tensor([-0.5, 0.0, -1.0]), torch.tensor([0.5, 0.2, 1.0])
    target = torch.tensor([2.0, -1.0, 0.3]).expand(1, H, A)
    result = make_planner(name).plan(quadratic(target), 1, H, low, high, generator=gens(1))
    assert (result.actions >= low).all() and (result.actions <= high).all()
    assert (result.actions - torch.maximum(torch.minimum(target, high), low)).abs().max() < 0.05


def test_feasible_first_cem_avoids_keep_out_disc():
    center, radius = (0.0, 0.0), 0.15
    start, goal = [[-0.4, 0.0]], [[0.4, 0.0]]
    plain = point_mass_objective(start, goal, [GoalEnergy(steps="last")])
    guarded = point_mass_objective(start, goal, [GoalEnergy(steps="last"), KeepOut(centers=[center], radii=radius)])
    cfg = dict(num_samples=300, num_elites=30, iterations=20)
    naive = make_planner("cem", **cfg).plan(plain, 1, 10, -torch.ones(2), torch.ones(2), generator=gens(1))
    safe = make_planner("cem", **cfg).plan(guarded, 1, 10, -torch.ones(2), torch.ones(2), generator=gens(1))
    dist = lambda r, obj: obj.rollout(r.actions[:, None])[0, 0, :, 0].norm(dim=-1)  # [H] distance to centre
    assert dist(naive, plain).min() < radius, "without the guardrail the straight path crosses the disc"
    assert dist(safe, guarded).min() >= radius - 1e-6 and safe.violation.item() == 0
    final = guarded.rollout(safe.actions[:, None])[0, 0, -1, 0]
    assert (final - torch.tensor(goal[0])).norm() < 0.1


def test_feasible_first_order_never_ranks_violators_first():
    total = torch.tensor([[0.0, 5.0, 1.0, -3.0]])
    violation = torch.tensor([[0.2, 0.0, 0.0, 0.1]])
    assert feasible_first_order(total, violation).tolist() == [[2, 1, 3, 0]]


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_plan_and_batched_equals_separate(name):
    start, goal = [[0.0, 0.0], [0.1, 0.1], [-0.2, 0.3]], [[0.3, -0.2], [-0.2, 0.2], [0.0, 0.0]]
    small = {"gd": dict(iterations=10), "cem-gd": dict(cem=dict(iterations=3), gd=dict(iterations=5))}
    planner = make_planner(name, **small.get(name, {"iterations": 3}))
    plan = lambda B, s, g, seed: planner.plan(point_mass_objective(s, g), B, 4, -torch.ones(2), torch.ones(2),
                                             generator=gens(B, seed))
    batched, again = plan(3, start, goal, 7), plan(3, start, goal, 7)
    assert torch.equal(batched.actions, again.actions)
    for b in range(3):
        alone = plan(1, start[b : b + 1], goal[b : b + 1], 7 + b)
        torch.testing.assert_close(batched.actions[b], alone.actions[0], atol=1e-5, rtol=0)
    other = plan(3, start, goal, 8)
    assert not torch.equal(batched.actions, other.actions)


def test_icem_carries_shifted_elites_and_warm_start_helps():
    target = torch.linspace(-0.5, 0.5, 8).reshape(1, 4, 2)
    planner = make_planner("icem", iterations=2, num_samples=50, num_elites=10)
    cold = planner.plan(quadratic(target), 1, 4, -torch.ones(2), torch.ones(2), generator=gens(1))
    assert cold.elites.shape == (1, 10, 4, 2)
    warm = planner.plan(quadratic(target), 1, 4, -torch.ones(2), torch.ones(2), init=cold.actions,
                        init_elites=cold.elites, generator=gens(1, 1))
    assert warm.cost.item() <= cold.cost.item()


def test_shift_plan():
    plan = torch.arange(8.0).reshape(1, 4, 2)
    assert shift_plan(plan, 1).tolist() == [[[2, 3], [4, 5], [6, 7], [6, 7]]]
    assert shift_plan(plan, 2, pad="zero").tolist() == [[[4, 5], [6, 7], [0, 0], [0, 0]]]
    with pytest.raises(ValueError):
        shift_plan(plan, 1, pad="mirror")


def test_bad_inputs_raise_clear_errors():
    planner = make_planner("cem", iterations=1)
    obj = quadratic(torch.zeros(1, 3, 2))
    lo, hi = -torch.ones(2), torch.ones(2)
    with pytest.raises(ValueError, match="init must have shape"):
        planner.plan(obj, 1, 3, lo, hi, init=torch.zeros(1, 4, 2))
    with pytest.raises(ValueError, match="NaN"):
        planner.plan(obj, 1, 3, lo, hi, init=torch.full((1, 3, 2), float("nan")))
    with pytest.raises(ValueError, match="action_low"):
        planner.plan(obj, 1, 3, hi, lo)
    with pytest.raises(ValueError, match=r"shape \[B, N\]"):
        planner.plan(lambda a: CostOutput(a.sum((-1, -2, -3))), 1, 3, lo, hi)
    with pytest.raises(ValueError, match="num_elites"):
        CEMConfig(num_samples=10, num_elites=20)
    with pytest.raises(ValueError, match="unknown planner"):
        make_planner("rrt")
    with pytest.raises(ValueError, match="unknown cem planner setting"):
        make_planner("cem", samples=10)


def test_flops_report_counts_candidate_steps():
    objective = point_mass_objective([[0.0, 0.0]], [[0.1, 0.1]])
    result = make_planner("cem", num_samples=20, num_elites=5, iterations=3).plan(
        objective, 1, 5, -torch.ones(2), torch.ones(2))
    assert result.predictor_calls == 3 * 20 * 5
    assert result.grad_calls == 0 and flops_per_replan(PointMass(), result) == 4.0 * 300
    assert flops_per_replan(object(), result) is None
    report = replan_report(PointMass(), result, peak_gflops=100.0)
    assert report["flops"] == 1200.0 and report["fraction_of_peak"] >= 0


def test_flops_count_backward_only_for_gradient_steps():
    """CEM-GD's sampling stage runs forward only; its Adam steps also run backward (x3)."""
    objective = point_mass_objective([[0.0, 0.0]], [[0.1, 0.1]])
    lo, hi = -torch.ones(2), torch.ones(2)
    gd = make_planner("gd", num_starts=2, iterations=4).plan(objective, 1, 5, lo, hi)
    assert gd.grad_calls == 4 * 2 * 5 and gd.predictor_calls == 5 * 2 * 5  # the last iterate: forward only
    hybrid = make_planner("cem-gd", cem={"num_samples": 20, "num_elites": 4, "iterations": 2},
                          gd={"num_starts": 2, "iterations": 4}).plan(objective, 1, 5, lo, hi)
    forward_only = 2 * 20 * 5 + 2 * 5  # the CEM stage and GD's last iterate
    assert hybrid.grad_calls == 4 * 2 * 5 and hybrid.predictor_calls - hybrid.grad_calls == forward_only
    assert flops_per_replan(PointMass(), hybrid) == 4.0 * (forward_only + 3 * hybrid.grad_calls)


def test_sampling_planner_is_fast_under_inference_mode():
    objective = point_mass_objective([[0.0, 0.0]] * 4, [[0.3, 0.3]] * 4)
    start = time.perf_counter()
    with torch.inference_mode():
        make_planner("cem").plan(objective, 4, 5, -torch.ones(2), torch.ones(2))
    assert time.perf_counter() - start < 2.0
