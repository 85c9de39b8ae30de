"""`wmplan route-graph`: build a route graph (probe positions of a dataset's frames) for `--route`."""

from __future__ import annotations

import json
import time

from wmplan.device import device_argument

NAME = "route-graph"
HELP = "build the route graph that `wmplan bench --route` plans along, from a dataset and a trained checkpoint"


def add_arguments(p):
    p.add_argument("--data", required=True, help="dataset directory (from `wmplan collect`)")
    p.add_argument("--checkpoint", required=True, help="world_model.pt with a probe (from `wmplan train`)")
    p.add_argument("--out", required=True, help="graph file to write, e.g. experiments/checkpoints/maze/route_graph.pt")
    p.add_argument("--nodes", type=int, default=200, help="places kept by farthest-point sampling")
    p.add_argument("--stride", type=int, default=7, help="every stride-th frame is a node candidate")
    p.add_argument("--seed", type=int, default=0, help="picks the first node")
    p.add_argument("--device", type=device_argument, default="cpu", help="where the encoder runs if the dataset's features are not cached yet")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    from wmplan.data import EpisodeDataset
    from wmplan.route import RouteGraph, RouteGraphConfig, dataset_positions
    from wmplan.world_model import WorldModel

    cfg = RouteGraphConfig(nodes=args.nodes, stride=args.stride, seed=args.seed)
    dataset = EpisodeDataset(args.data)
    wm = WorldModel.load(args.checkpoint, device=args.device)
    dataset.check_env(wm.env, "the checkpoint trained on")  # another env's probe reads nonsense positions
    start = time.perf_counter()
    graph = RouteGraph.build(dataset_positions(wm, dataset, device=args.device, progress=not args.quiet), cfg)
    graph.meta.update(data=str(args.data), checkpoint=str(args.checkpoint), seconds=round(time.perf_counter() - start, 1))
    graph.save(args.out)
    edges = int(graph.adjacency.sum()) // 2
    print(f"route graph: {len(graph.nodes)} nodes, {edges} edges, node spacing {graph.spacing():.3g} -> {args.out}")
    print(json.dumps(graph.meta))
    return 0
