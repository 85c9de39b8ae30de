"""`wmplan demo`: the push-T benchmark on a few episodes with the shipped checkpoint."""

from __future__ import annotations

NAME = "demo"
HELP = "plan on push-T with the shipped checkpoint for a few episodes; print the table, write a video"


def add_arguments(p):
    p.add_argument("--episodes", type=int, default=5, help="seeded episodes (default 5)")
    p.add_argument("--planner", default="cem", help="planner (default cem)")
    p.add_argument("--out", default="runs/demo", help="output directory")


def run(args) -> int:
    from wmplan.bench import load_spec, print_summary, run_bench

    spec = load_spec("pusht")
    summary = run_bench(spec, args.planner, args.out, episodes=args.episodes)
    floor = run_bench(spec, "zero", f"{args.out}/zero", episodes=args.episodes, progress=False)  # seconds
    print_summary({**summary, "rows": [summary["row"], floor["row"]]})
    print("(the zero-action row is the floor: the same episodes with no model at all)")
    panels = "real | imagined | goal" if summary.get("decoder") else "real | goal"
    print(f"\nvideo ({panels}): {args.out}/videos/episode_000.gif")
    return 0
