"""Route graph and route energy: distances follow the data around walls, the energy removes the
wall's local minimum for sampling and gradient planners, files and bad input are handled."""

import numpy as np
import pytest
import torch

from wmplan.checkpoint import CheckpointError, save_atomic
from wmplan.costs import CostContext, GoalEnergy
from wmplan.planners import make_planner
from wmplan.route import UNREACHABLE, RouteEnergy, RouteGraph, RouteGraphConfig

from test_planners import gens, point_mass_objective

# A U-shaped corridor one unit wide around a wall block x in (1, 2), y > 1: the data walks down the
# left arm, along the bottom and up the right arm (and back), never through the wall.
LEFT, RIGHT = (0.5, 2.5), (2.5, 2.5)
WALL = dict(x=(1.0, 2.0), y=(1.0, 3.0))


def u_walks(episodes=6, seed=0):
    rng = np.random.default_rng(seed)
    corners = np.array([[0.5, 2.8], [0.5, 0.5], [2.5, 0.5], [2.5, 2.8]])
    walks = []
    for e in range(episodes):
        legs = [np.linspace(a, b, 40, endpoint=False) for a, b in zip(corners[:-1], corners[1:])]
        path = np.concatenate(legs) + rng.normal(0, 0.1, (120, 2))
        walks.append(path if e % 2 else path[::-1])
    return walks


@pytest.fixture(scope="module")
def graph():
    return RouteGraph.build(u_walks(), RouteGraphConfig(nodes=40, stride=1))


def cost_at(term, points, goal):
    z = torch.tensor(points, dtype=torch.float32).reshape(1, -1, 1, 1, 2)  # [B=1, N, H=1, P=1, D=2]
    ctx = CostContext(actions=torch.zeros(1, len(points), 1, 2), z_pred=z,
                      z_goal=torch.tensor([goal], dtype=torch.float32).reshape(1, 1, 2), readout=lambda z: z[..., 0, :])
    return term.amount(ctx)[0]  # [N]


def node_near(graph, point):
    return int((graph.nodes - torch.tensor(point)).norm(dim=1).argmin())


def test_graph_distance_goes_around_the_wall(graph):
    dist = graph.distances()
    assert dist.shape == (40, 40) and torch.allclose(dist, dist.T, atol=1e-5) and (dist.diagonal() == 0).all()
    around = dist[node_near(graph, LEFT), node_near(graph, RIGHT)]
    assert 5.0 < around < 7.0, "the way round the wall is ~6 long (the straight line is 2)"
    assert 0.1 < graph.spacing() < 0.6


def test_route_energy_is_distance_to_go(graph):
    term = RouteEnergy(graph, reach=0.5)
    left, bottom, in_wall, deep_in_wall, goal = cost_at(term, [LEFT, (1.5, 0.5), (1.5, 2.5), (1.5, 2.0), RIGHT], RIGHT)
    assert goal == 0.0, "zero at the goal"
    assert 5.0 < left < 7.0 and 2.0 < bottom < 4.0, "charged along the corridor, not the straight line"
    # positions no data came near pay steeply for their straight legs (1.0 and 1.1 to the goal)
    assert in_wall > 2 * 1.0 and deep_in_wall > 2 * 1.12 and deep_in_wall > in_wall


def test_excluded_region_reroutes_or_disconnects(graph):
    assert (graph.distances() < UNREACHABLE).all()
    assert (graph.distances([(1.5, 0.5, 0.6)]) >= UNREACHABLE).any(), "blocking the bottom of the U cuts the arms apart"
    uncut = cost_at(RouteEnergy(graph, reach=0.5), [LEFT], RIGHT)[0]
    cut = cost_at(RouteEnergy(graph, reach=0.5, exclude=[(1.5, 0.5, 0.6)]), [LEFT], RIGHT)[0]
    assert cut > uncut + 5, "no way round left: only a steeply charged leg across the wall"
    shorter = cost_at(RouteEnergy(graph, reach=0.5, exclude=[(0.5, 2.9, 0.3)]), [LEFT], RIGHT)[0]
    assert torch.isclose(shorter, uncut), "a region off the route changes nothing"


@pytest.mark.parametrize("name", ["cem", "gd"])
def test_route_energy_leads_out_of_the_walls_local_minimum(graph, name):
    """From the left arm towards a goal across the wall: the plain goal energy heads straight at the
    wall (x grows); with the route energy the plan heads down the arm, the way round."""
    plain = point_mass_objective([LEFT], [RIGHT], [GoalEnergy(steps="last")], dt=0.2)
    routed = point_mass_objective([LEFT], [RIGHT], [RouteEnergy(graph, reach=0.5, steps="all")], dt=0.2)

    def end(objective):
        result = make_planner(name).plan(objective, 1, 4, -torch.ones(2), torch.ones(2), generator=gens(1))
        return objective.rollout(result.actions[:, None])[0, 0, -1, 0]  # [2]

    straight, around = end(plain), end(routed)
    assert straight[0] > LEFT[0] + 0.3, "without the route the plan presses towards the wall"
    assert around[1] < LEFT[1] - 0.3 and abs(around[0] - LEFT[0]) < 0.3, "with it the plan goes down the arm"


def test_save_load_and_bad_files(graph, tmp_path):
    path = graph.save(tmp_path / "g.pt")
    loaded = RouteGraph.load(path)
    assert torch.equal(loaded.nodes, graph.nodes) and torch.equal(loaded.adjacency, graph.adjacency)
    assert loaded.meta["config"]["nodes"] == 40
    (tmp_path / "cut.pt").write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        RouteGraph.load(tmp_path / "cut.pt")
    save_atomic({"kind": "wmplan-world-model"}, tmp_path / "wm.pt")
    with pytest.raises(CheckpointError, match="expected 'wmplan-route-graph'"):
        RouteGraph.load(tmp_path / "wm.pt")
    save_atomic({"kind": "wmplan-route-graph", "nodes": torch.zeros(3, 3), "adjacency": torch.zeros(3, 3)}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="rebuild it with `wmplan route-graph`"):
        RouteGraph.load(tmp_path / "bad.pt")
    with pytest.raises(FileNotFoundError):
        RouteGraph.load(tmp_path / "missing.pt")


def test_bad_input_raises_clear_errors(graph):
    with pytest.raises(ValueError, match="NaN"):
        RouteGraph.build([np.array([[0.0, 0.0], [np.nan, 1.0]])], RouteGraphConfig(nodes=2, stride=1))
    with pytest.raises(ValueError, match=r"\[T, 2\]"):
        RouteGraph.build([np.zeros((5, 3))])
    with pytest.raises(ValueError, match="lower nodes or stride"):
        RouteGraph.build([np.zeros((5, 2))], RouteGraphConfig(nodes=10, stride=1))
    with pytest.raises(ValueError, match="nodes >= 2"):
        RouteGraphConfig(nodes=1)
    with pytest.raises(ValueError, match="reach > 0"):
        RouteEnergy(graph, reach=0.0)
    with pytest.raises(ValueError, match="position readout"):
        RouteEnergy(graph).amount(CostContext(actions=torch.zeros(1, 1, 1, 2), z_pred=torch.zeros(1, 1, 1, 1, 2),
                                              readout=lambda z: z[..., 0, :]))
