"""What pretraining the encoder and training the world model cost on this machine (issue 5's cost).

    python experiments/training_cost.py --data data/pusht --env pusht

Runs the project's own commands (`wmplan pretrain-encoder`, `wmplan train`) at their default settings
for a few short step counts, times them, and splits each wall time into a fixed part (loading data,
building the model, writing files) and a per-step part: two runs of n1 and n2 steps give
``per_step = (t(n2) - t(n1)) / (n2 - n1)``. `wmplan train` first encodes the whole dataset once into
the feature cache, so it runs n1 twice: the first run pays for the cache, the second reuses it.
The full runs are then *projected* as fixed + steps x per-step (+ the cache) for the CLI defaults
and for the shipped checkpoint's recorded step counts; the JSON says which numbers are measured
and which are projected. `wmplan train` is timed on the token grid of the shipped recipe's train
command (`--pool-grid`, e.g. every patch for push-T) unless `--pool-grid` says otherwise.
Writes experiments/results/<env>_training_cost.json; a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout, installed or not

from wmplan.encoders import load_encoder
from wmplan.encoders.features import cache_path
from wmplan.results import hardware

HERE = Path(__file__).resolve().parent
PRETRAIN_DEFAULT_STEPS, TRAIN_DEFAULT_STEPS = 3000, 20_000  # the CLI defaults (`wmplan ... --help`)


def _timed(args: list[str]) -> float:
    """Wall seconds of one `wmplan` command (quiet); a failure stops the measurement with its output."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "wmplan.cli", *args, "--quiet"], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"`wmplan {' '.join(args)}` failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - start


def _split(t1: float, t2: float, n1: int, n2: int) -> dict:
    per_step = (t2 - t1) / (n2 - n1)
    return {"per_step_s": per_step, "fixed_s": t1 - n1 * per_step, "runs": {str(n1): t1, str(n2): t2}}


def _shipped_commands(env: str) -> list[str]:
    """The shipped checkpoint's recorded commands (manifest.json), encoder pretraining included."""
    path = HERE / "checkpoints" / env / "manifest.json"
    manifest = json.loads(path.read_text()) if path.is_file() else {}
    records = manifest.get("steps", []) + manifest.get("encoder_origin", {}).get("pretrain_steps", [])
    return [r["command"] for r in records]


def _shipped_steps(env: str) -> dict:
    """Step counts of the shipped checkpoint's recorded commands, where it records them."""
    steps = {}
    for command in _shipped_commands(env):
        found = re.search(r"wmplan (pretrain-encoder|train) .*--steps (\d+)", command)
        if found:
            steps[found.group(1)] = int(found.group(2))
    return steps


def _shipped_pool_grid(env: str) -> int | None:
    """`--pool-grid` of the shipped checkpoint's `wmplan train` command; None where it uses the encoder's own."""
    for command in _shipped_commands(env):
        found = re.search(r"wmplan train .*--pool-grid (\d+)", command)
        if found:
            return int(found.group(1))
    return None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="the env's dataset (from `wmplan collect`)")
    p.add_argument("--env", default="pusht")
    p.add_argument("--pretrain-steps", default="3,13", help="two short step counts n1,n2 for pretrain-encoder")
    p.add_argument("--train-steps", default="50,250", help="two short step counts n1,n2 for train")
    p.add_argument("--pool-grid", type=int, default=None,
                   help="token grid for `wmplan train` (0 = every patch; default: the shipped recipe's)")
    p.add_argument("--out", default=None, help="result file (default experiments/results/<env>_training_cost.json)")
    args = p.parse_args(argv)
    (p1, p2), (s1, s2) = (tuple(int(n) for n in text.split(",")) for text in (args.pretrain_steps, args.train_steps))
    grid = _shipped_pool_grid(args.env) if args.pool_grid is None else args.pool_grid
    grid_args = [] if grid is None else ["--pool-grid", str(grid)]
    with tempfile.TemporaryDirectory() as tmp:
        enc = lambda n: f"{tmp}/encoder_{n}.pt"
        pre = [_timed(["pretrain-encoder", "--data", args.data, "--out", enc(n), "--steps", str(n)]) for n in (p1, p2)]
        # train writes the timing encoder's feature cache next to the dataset; it is removed afterwards
        train = lambda n, run: _timed(["train", "--env", args.env, "--data", args.data, "--encoder", enc(p1),
                                       "--out", f"{tmp}/train_{run}", "--steps", str(n), "--val-every", str(n), *grid_args])
        first, t1, t2 = train(s1, "a"), train(s1, "b"), train(s2, "c")
        cache_path(args.data, load_encoder(enc(p1), pool_grid=grid)).unlink(missing_ok=True)  # the timing encoder's cache only
    pretrain, training = _split(*pre, p1, p2), _split(t1, t2, s1, s2)
    training["feature_cache_s"] = first - t1
    project = lambda pre_steps, train_steps: {
        "pretrain_encoder_steps": pre_steps, "train_steps": train_steps,
        "pretrain_encoder_s": pretrain["fixed_s"] + pre_steps * pretrain["per_step_s"],
        "train_s": training["fixed_s"] + training["feature_cache_s"] + train_steps * training["per_step_s"]}
    projected = {"cli_defaults": project(PRETRAIN_DEFAULT_STEPS, TRAIN_DEFAULT_STEPS)}
    shipped = _shipped_steps(args.env)
    if {"pretrain-encoder", "train"} <= set(shipped):
        projected["shipped_checkpoint_recipe"] = project(shipped["pretrain-encoder"], shipped["train"])
    for row in projected.values():
        row["total_minutes"] = (row["pretrain_encoder_s"] + row["train_s"]) / 60
    result = {"env": args.env, "data": args.data, "hardware": hardware(), "train_pool_grid": grid,
              "measured": {"pretrain_encoder": pretrain, "train": training},
              "projected": projected, "target_minutes": 45,
              "note": "measured: wall times of short runs of the default commands; projected: fixed + steps x per-step"}
    out = Path(args.out) if args.out else HERE / "results" / f"{args.env}_training_cost.json"
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
