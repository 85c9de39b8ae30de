"""Which benchmark successes needed the planner: successes split by what the zero-action floor reaches.

Push-T's goals are the state 25 env steps ahead on an expert trajectory, and on some tasks the
expert moved only the pusher: the block already sits within the success tolerance of its goal, and
doing nothing leaves it there (`success_block` of `wmplan bench --planner zero`). A planner that
only brings the agent to its goal succeeds on those. This script splits each benchmark's successes
into tasks whose block the zero action already leaves in place and tasks where the block had to be
pushed, and writes the counts where `experiments/make_results.py` lists them. Oracle runs
(`experiments/oracle_planning.py`, the same tasks on fewer seeds) are split the same way.

    python -m experiments.success_beyond_floor --env pusht
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent


def episodes_by_seed(run_dir: Path) -> dict[int, dict]:
    """The finished episodes of a `wmplan bench` output directory, by seed."""
    from wmplan.evaluate import read_episodes

    return {rec["seed"]: rec for rec in read_episodes(run_dir / "episodes.jsonl")}


def split_successes(runs: dict[str, dict[int, dict]], floor: dict[int, dict], key: str) -> dict:
    """Per run: its successes split by whether the floor already meets `key` on the same task (seed).

    Runs with a seed the floor did not play are left out: there is nothing to split them by."""
    solved = {seed for seed, rec in floor.items() if rec["metrics"].get(key)}
    rows = {}
    for name, episodes in sorted(runs.items()):
        if not set(episodes) <= set(floor):
            continue
        wins = {seed for seed, rec in episodes.items() if rec["success"]}
        rows[name] = {"episodes": len(episodes), "floor_met": len(solved & set(episodes)), "successes": len(wins),
                      "successes_floor_already_met": len(wins & solved),
                      "successes_beyond_floor": len(wins - solved)}
    return {"floor_key": key, "floor_met": len(solved), "episodes": len(floor), "runs": rows}


def oracle_episodes(path: Path) -> dict[int, dict]:
    """The episodes of an `experiments/oracle_planning.py` result, by seed (same tasks as the benchmark's)."""
    return {rec["seed"]: rec for rec in json.loads(path.read_text())["episodes"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="pusht", help="environment whose benchmark outputs are split")
    p.add_argument("--key", default="success_block",
                   help="episode metric the zero floor must meet for a task to count as already solved")
    p.add_argument("--bench", default=str(HERE / "results" / "bench"), help="folder of `wmplan bench` outputs")
    p.add_argument("--oracles", default=str(HERE / "results"),
                   help="folder of `experiments/oracle_planning.py` outputs (<env>_oracle_*.json), split the same way")
    p.add_argument("--out", default=None, help="JSON to write (default experiments/results/<env>_success_beyond_floor.json)")
    args = p.parse_args(argv)
    bench = Path(args.bench)
    floor_dir = bench / f"{args.env}-zero"
    if not (floor_dir / "episodes.jsonl").is_file():
        raise SystemExit(f"no zero-action floor in {floor_dir}: run `wmplan bench --env {args.env} --planner zero "
                         f"--out {floor_dir}` first")
    runs = {d.name: episodes_by_seed(d) for d in sorted(bench.glob(f"{args.env}-*"))
            if d != floor_dir and (d / "episodes.jsonl").is_file()}
    runs |= {path.stem: oracle_episodes(path) for path in sorted(Path(args.oracles).glob(f"{args.env}_oracle_*.json"))}
    result = {"env": args.env, **split_successes(runs, episodes_by_seed(floor_dir), args.key)}
    out = Path(args.out or HERE / "results" / f"{args.env}_success_beyond_floor.json")
    out.write_text(json.dumps(result, indent=1) + "\n")
    for name, row in result["runs"].items():
        print(f"{name}: {row['successes']} of {row['episodes']} successes, {row['successes_beyond_floor']} on the "
              f"{row['episodes'] - row['floor_met']} tasks where the floor misses {args.key}")
    print(f"the zero action meets {args.key} on {result['floor_met']} of {result['episodes']} tasks; wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
