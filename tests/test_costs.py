"""Cost terms compute what they claim on hand-checked examples and report their parts."""

import pytest
import torch

from wmplan.costs import (
    ActionBounds, ActionRate, CostContext, CostSum, CostTerm, DataSupport, GoalEnergy, KeepOut, ReadoutGoal, Workspace,
    probe_readout,
)

torch.set_num_threads(1)


def ctx(actions, z_pred=None, z_goal=None, prev=None):
    return CostContext(torch.as_tensor(actions, dtype=torch.float32), z_pred, z_goal, prev, readout=lambda z: z[..., 0, :2])


def test_goal_energy_l2_l1_steps_and_feature_slice():
    z_pred = torch.zeros(1, 1, 2, 1, 3)  # [B, N, H, P, D]
    z_pred[0, 0, 0] = torch.tensor([2.0, 0.0, 9.0])
    z_pred[0, 0, 1] = torch.tensor([1.0, 1.0, 9.0])
    z_goal = torch.zeros(1, 1, 3)
    c = ctx(torch.zeros(1, 1, 2, 1), z_pred, z_goal)
    assert GoalEnergy(distance="l2", steps="last").amount(c).item() == pytest.approx((1 + 1 + 81) / 3)
    assert GoalEnergy(distance="l2", steps="last", features=(0, 2)).amount(c).item() == pytest.approx(1.0)
    assert GoalEnergy(distance="l1", steps="all", features=(0, 2)).amount(c).item() == pytest.approx((1 + 1) / 2)
    assert GoalEnergy(steps=[3.0, 1.0], features=(0, 2)).amount(c).item() == pytest.approx(0.75 * 2 + 0.25 * 1)


def test_early_weight_holds_until_the_plan_ends_the_episode():
    z_pred, z_goal = torch.ones(1, 1, 1, 1, 2), torch.zeros(1, 1, 2)  # energy 1 per candidate
    term = GoalEnergy(weight=2.0, early_weight=0.5)
    totals = {}
    for at_end in (False, True, None):
        c = CostContext(torch.zeros(1, 1, 1, 2), z_pred, z_goal, at_end=at_end)
        out = CostSum([term, GoalEnergy(name="plain", weight=3.0)])(c)
        totals[at_end] = (out.total.item(), out.terms["goal"].item())
    # mid-episode the early weight; in the plan that ends the episode, or when nobody knows, the weight
    assert totals == {False: (3.5, 0.5), True: (5.0, 2.0), None: (5.0, 2.0)}
    with pytest.raises(ValueError, match="early_weight"):
        GoalEnergy(early_weight=-1.0)
    with pytest.raises(ValueError, match="penalties"):
        CostTerm("bound", mode="constraint", early_weight=0.0)


def test_readout_goal_compares_what_the_readout_reads():
    # the readout reads the token's 2nd and 3rd features (say, the block's xy in mm); the 1st is ignored.
    # Two environments with different goals: env 1's candidates are env 0's, shifted by its goal.
    goals = torch.tensor([[0.0, 0.0, 0.0], [7.0, 100.0, -50.0]])
    z_pred = torch.zeros(2, 2, 2, 1, 3)  # [B, N, H, P, D]
    z_pred[0, 0, 1] = torch.tensor([50.0, 10.0, 20.0])  # candidate 0 ends 10 mm / 20 mm off, far in feature 0
    z_pred[0, 1, 1] = torch.tensor([0.0, 0.0, 40.0])  # candidate 1 ends 40 mm off in y only
    z_pred[1] = z_pred[0] + goals[1]
    c = ctx(torch.zeros(2, 2, 2, 1), z_pred, goals[:, None])  # z_goal [B, P, D]
    term = ReadoutGoal(lambda z: z[..., 0, 1:], scale=10.0)
    expected = torch.tensor([(1 + 4) / 2, 16 / 2])
    torch.testing.assert_close(term.amount(c), torch.stack([expected, expected]))
    per_quantity = ReadoutGoal(lambda z: z[..., 0, 1:], scale=[10.0, 20.0], steps="all")
    expected = torch.tensor([(1 + 1) / 2 / 2, 4 / 2 / 2])  # "all": the first step is at the goal in both envs
    torch.testing.assert_close(per_quantity.amount(c), torch.stack([expected, expected]))
    # a term that ignored the goals (or used env 0's for both) would charge env 1 its goal's distance
    swapped = ctx(torch.zeros(2, 2, 2, 1), z_pred, goals.flip(0)[:, None])
    assert (term.amount(swapped) > 50).all()
    with pytest.raises(ValueError, match="positive"):
        ReadoutGoal(lambda z: z, scale=[1.0, 0.0])


def test_action_guardrails():
    a = [[[[0.5, 2.0], [1.5, 0.0]]]]  # [B=1, N=1, H=2, A=2]
    assert ActionBounds(low=[-1, -1], high=[1, 1]).amount(ctx(a)).item() == pytest.approx(1.0 + 0.5)
    assert ActionBounds(max_norm=1.0).amount(ctx(a)).item() == pytest.approx((4.25**0.5 - 1) + 0.5)
    # rate: |1.5-0.5| = 1 and |0-2| = 2 over max_delta 0.5 -> 0.5 + 1.5
    assert ActionRate(max_delta=0.5).amount(ctx(a)).item() == pytest.approx(2.0)
    # with the previous action (0, 2): first step differs by (0.5, 0)
    assert ActionRate(max_delta=0.0, power=2).amount(ctx(a, prev=torch.tensor([[0.0, 2.0]]))).item() == pytest.approx(
        0.25 + 1 + 4)
    # frameskip 2: a planned step [a1, a2] holds two env actions of size 1 -> 4 env actions 0.5,2,1.5,0
    assert ActionRate(max_delta=0.0, env_action_dim=1).amount(ctx(a)).item() == pytest.approx(1.5 + 0.5 + 1.5)


def test_position_guardrails_read_the_readout():
    z_pred = torch.tensor([[0.0, 0.0], [0.05, 0.0], [2.0, 0.0]]).reshape(1, 1, 3, 1, 2)
    c = ctx(torch.zeros(1, 1, 3, 2), z_pred)
    assert KeepOut(centers=[[0.0, 0.0]], radii=0.1).amount(c).item() == pytest.approx(0.1 + 0.05)
    assert KeepOut(centers=[[0.0, 0.0], [2.0, 0.0]], radii=[0.1, 0.2]).amount(c).item() == pytest.approx(0.35)
    assert Workspace(low=(-1, -1), high=(1, 1)).amount(c).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="readout"):
        KeepOut().amount(CostContext(torch.zeros(1, 1, 3, 2), z_pred))


def test_swept_keep_out_sees_a_path_that_jumps_over_the_disc():
    # both predicted points lie 0.3 from the centre, but the straight step between them passes through it
    z_pred = torch.tensor([[-0.3, 0.0], [0.3, 0.0]]).reshape(1, 1, 2, 1, 2)
    c = ctx(torch.zeros(1, 1, 2, 2), z_pred)
    assert KeepOut(centers=[[0.0, 0.0]], radii=0.1, swept=False).amount(c).item() == 0
    assert KeepOut(centers=[[0.0, 0.0]], radii=0.1).amount(c).item() == pytest.approx(0.1)
    # the path starts at the current position z_now: the first step (from (0, -0.3)) cuts the disc too
    c = CostContext(torch.zeros(1, 1, 2, 2), z_pred, readout=lambda z: z[..., 0, :], z_now=torch.tensor([[[0.0, -0.3]]]))
    assert KeepOut(centers=[[0.0, 0.0]], radii=0.25).amount(c).item() == pytest.approx((0.25 - 0.3 / 2**0.5) + 0.25)
    # starting inside the disc: leaving costs nothing, going deeper costs the extra depth
    leave = CostContext(torch.zeros(1, 1, 1, 2), torch.tensor([[0.5, 0.0]]).reshape(1, 1, 1, 1, 2),
                        readout=lambda z: z[..., 0, :], z_now=torch.tensor([[[0.1, 0.0]]]))
    assert KeepOut(centers=[[0.0, 0.0]], radii=0.25).amount(leave).item() == 0
    deeper = CostContext(torch.zeros(1, 1, 1, 2), torch.tensor([[-0.5, 0.0]]).reshape(1, 1, 1, 1, 2),
                         readout=lambda z: z[..., 0, :], z_now=torch.tensor([[[0.1, 0.0]]]))
    assert KeepOut(centers=[[0.0, 0.0]], radii=0.25).amount(deeper).item() == pytest.approx(0.25 - 0.15)


def test_data_support_on_actions_and_latents():
    c = ctx([[[[4.0, 0.0], [0.0, -5.0]]]], torch.full((1, 1, 2, 3, 2), 10.0))
    assert DataSupport(mean=0.0, std=1.0, max_z=3.0).amount(c).item() == pytest.approx((1 + 0) / 2 + (0 + 2) / 2)
    assert DataSupport(on="latents", mean=[0.0, 10.0], std=2.0, max_z=3.0).amount(c).item() == pytest.approx(2 * 1.0)


def test_sum_reports_parts_penalties_sum_to_total_constraints_to_violation():
    torch.manual_seed(0)
    actions = torch.randn(2, 5, 3, 2)  # [B, N, H, A]
    z_pred, z_goal = torch.randn(2, 5, 3, 4, 2), torch.randn(2, 4, 2)
    costs = CostSum([GoalEnergy(weight=2.0), ActionBounds(weight=0.5, low=[-1, -1], high=[1, 1]),
                     ActionRate(weight=0.1), KeepOut(centers=[[0, 0]], radii=0.5, mode="constraint"),
                     Workspace(low=(-1, -1), high=(1, 1), mode="penalty", weight=3.0)])
    out = costs(ctx(actions, z_pred, z_goal))
    assert set(out.terms) == {"goal", "action_bounds", "action_rate", "keep_out", "workspace"}
    penalty = sum(v for k, v in out.terms.items() if out.modes[k] == "penalty")
    constraint = sum(v for k, v in out.terms.items() if out.modes[k] == "constraint")
    torch.testing.assert_close(out.total, penalty)
    torch.testing.assert_close(out.violation, constraint)
    assert out.total.shape == (2, 5) and (out.violation >= 0).all() and (out.violation > 0).any()
    torch.testing.assert_close(out.terms["goal"], 2.0 * GoalEnergy().amount(ctx(actions, z_pred, z_goal)))


def test_probe_readout_by_name():
    class Probe:
        names = ["block_x", "agent_x", "agent_y"]

        def __call__(self, z):
            return z.sum(-2)[..., :3]

    read = probe_readout(Probe())
    z = torch.arange(6.0).reshape(1, 2, 3)  # [B, P=2, D=3]
    assert read(z).tolist() == [[5.0, 7.0]]
    with pytest.raises(ValueError, match="no output named"):
        probe_readout(Probe(), ("hand_x",))


def test_bad_configurations_raise():
    with pytest.raises(ValueError, match="mode"):
        KeepOut(mode="soft")
    with pytest.raises(ValueError, match="distance"):
        GoalEnergy(distance="cosine")
    with pytest.raises(ValueError, match="unique"):
        CostSum([GoalEnergy(), GoalEnergy()])
    with pytest.raises(ValueError, match="step weights"):
        GoalEnergy(steps=[1.0]).amount(ctx(torch.zeros(1, 1, 2, 1), torch.zeros(1, 1, 2, 1, 1), torch.zeros(1, 1, 1)))
    with pytest.raises(ValueError, match="multiple"):
        ActionRate(env_action_dim=3).amount(ctx(torch.zeros(1, 1, 2, 4)))
