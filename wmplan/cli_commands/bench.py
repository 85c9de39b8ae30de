"""`wmplan bench`: one (env, planner) benchmark under the honest protocol; resumable."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math

from wmplan.device import device_argument

NAME = "bench"
HELP = "benchmark a planner on an environment with a trained checkpoint (JSON, CSV, table, videos)"
PLANNER_NAMES = ("cem", "icem", "mppi", "gd", "cem-gd")
BASELINE_NAMES = ("zero", "random")  # wmplan.bench.BASELINES, named here so `--help` imports no torch


def add_arguments(p):
    p.add_argument("--env", required=True, help="pusht, maze or chips")
    p.add_argument("--planner", default="cem", choices=PLANNER_NAMES + BASELINE_NAMES,
                   help="planner (default cem); zero / random: floors that act without a world model")
    p.add_argument("--episodes", type=positive_int, default=None, help="seeded episodes (default: the env's, >= 50)")
    p.add_argument("--checkpoint", default=None, help="world-model checkpoint (default: the shipped one)")
    p.add_argument("--out", default=None, help="output directory (default runs/bench/<env>-<planner>)")
    p.add_argument("--guardrail", action="store_true", help="add the env's keep-out guardrail as a constraint")
    p.add_argument("--route", action="store_true",
                   help="add the route energy: distance-to-go along the env's route graph (`wmplan route-graph`)")
    add_cost_arguments(p)
    p.add_argument("--device", type=device_argument, default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--seed", type=nonnegative_int, default=None,
                   help="base episode seed (default: the spec's; use others for tuning)")
    p.add_argument("--planner-settings", type=planner_settings, default={},
                   help='JSON overrides of the env\'s planner settings, e.g. \'{"num_samples": 48}\' (recorded in the results)')
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_cost_arguments(p):
    """The options that shape the agent's costs and horizon: `wmplan bench`'s, and those of the scripts
    that drive its agent (`experiments/planner_data.py`); `spec_from_cost_arguments` applies them."""
    p.add_argument("--readout-goal", action="store_true",
                   help="add the env's probe-read goal term (e.g. push-T's block position read from the latents)")
    p.add_argument("--readout-goal-weight", type=nonnegative_float, default=None, help="override that term's weight")
    p.add_argument("--readout-goal-settings", type=readout_goal_settings, default={},
                   help='JSON overrides of that term (ReadoutGoalSpec: names, scale, weight), e.g. \'{"names": '
                        '["block_x", "block_y", "sin(block_theta)", "cos(block_theta)"], "scale": [50, 50, 0.87, 0.87]}\'')
    p.add_argument("--budget-horizon", action="store_true",
                   help="tell the MPC loop the step budget: the last re-plans plan only up to the episode's end")
    p.add_argument("--proprio-weight", type=nonnegative_float, default=None, help="override the spec's proprio goal weight")
    p.add_argument("--proprio-weight-early", type=nonnegative_float, default=None,
                   help="the proprio goal weight while a plan ends before the episode (needs --budget-horizon); "
                        "the agent can still reach its goal position later")
    p.add_argument("--goal-steps", choices=["last", "all"], default=None, help="override the spec's goal steps")


def spec_from_cost_arguments(spec, args):
    """`spec` with `add_cost_arguments`' overrides applied.

    `--budget-horizon` is left to `wmplan.bench.with_budget_horizon`, which knows the episode budget."""
    overrides = {k: v for k, v in (("proprio_weight", args.proprio_weight), ("goal_steps", args.goal_steps),
                                   ("proprio_weight_early", args.proprio_weight_early)) if v is not None}
    spec = dataclasses.replace(spec, **overrides)
    if args.readout_goal and spec.readout_goal is None:
        raise ValueError(f"{spec.env} has no readout goal configured (BenchSpec.readout_goal); drop --readout-goal")
    settings = _readout_overrides(args)
    if settings and not args.readout_goal:
        raise ValueError("--readout-goal-weight and --readout-goal-settings need --readout-goal")
    if settings:
        spec = dataclasses.replace(spec, readout_goal=dataclasses.replace(spec.readout_goal, **settings))
    return spec


def _readout_overrides(args) -> dict:
    """`ReadoutGoalSpec` overrides from `--readout-goal-settings`, with `--readout-goal-weight` over its weight."""
    weight = args.readout_goal_weight
    return dict(args.readout_goal_settings) | ({"weight": weight} if weight is not None else {})


def _readout_suffix(args) -> str:
    """The readout-goal options' part of a default output folder's name: a re-weighted run never lands
    in the default run's folder."""
    if not args.readout_goal:
        return ""
    weight, settings = args.readout_goal_weight, _readout_overrides(args)
    return ("-readout" + (f"-w{weight:g}" if weight is not None else "")
            + (f"-{_short_hash(settings)}" if set(settings) - {"weight"} else ""))


def positive_int(text: str) -> int:
    """An integer >= 1; an argparse ``type``."""
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def nonnegative_int(text: str) -> int:
    """An integer >= 0; an argparse ``type``."""
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None


def nonnegative_float(text: str) -> float:
    """A finite number >= 0 (a weight); an argparse ``type``."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def planner_settings(text: str) -> dict:
    """Planner-setting overrides from a JSON object, e.g. ``'{"num_samples": 48}'``; an argparse ``type``."""
    return _json_object(text, "planner settings must be a JSON object such as '{\"num_samples\": 48}'")


def readout_goal_settings(text: str) -> dict:
    """`ReadoutGoalSpec` overrides from a JSON object (names, scale, weight); an argparse ``type``."""
    settings = _json_object(text, "readout-goal settings must be a JSON object such as '{\"weight\": 3}'")
    unknown = sorted(set(settings) - {"names", "scale", "weight"})
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown readout-goal setting(s) {unknown}; known: names, scale, weight")
    if "names" in settings:
        if not isinstance(settings["names"], list) or not all(isinstance(n, str) for n in settings["names"]):
            raise argparse.ArgumentTypeError(f"readout-goal names must be a list of probe output names, got {settings['names']!r}")
        settings["names"] = tuple(settings["names"])
    if "scale" in settings:
        settings["scale"] = _readout_scale(settings["scale"])
    if "weight" in settings:
        settings["weight"] = _readout_weight(settings["weight"])
    return settings


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _readout_scale(value):
    """`scale`: a finite number > 0, or a list of them (one per name)."""
    values = value if isinstance(value, list) else [value]
    if not values or not all(_is_number(v) and v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"readout-goal scale must be a finite number > 0 or a list of them, got {value!r}")
    return tuple(values) if isinstance(value, list) else float(value)


def _readout_weight(value) -> float:
    """`weight`: a finite number >= 0."""
    if not (_is_number(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"readout-goal weight must be a finite number >= 0, got {value!r}")
    return float(value)


def _short_hash(settings: dict) -> str:
    """8 hex digits that tell settings apart in a default output folder's name."""
    import hashlib

    return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]


def _json_object(text: str, hint: str) -> dict:
    try:
        settings = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"{hint}: {err}") from None
    if not isinstance(settings, dict):
        raise argparse.ArgumentTypeError(f"{hint}, got {text!r}")
    return settings


def run(args) -> int:
    import torch

    from wmplan.bench import load_spec, print_summary, run_bench

    if args.threads:
        torch.set_num_threads(args.threads)
    spec = load_spec(args.env)
    spec = spec_from_cost_arguments(spec, args)
    suffix = ("-route" if args.route else "") + _readout_suffix(args) + ("-keepout" if args.guardrail else "") + (
        "-budgeth" if args.budget_horizon else "") + (
        f"-pwe{args.proprio_weight_early:g}" if args.proprio_weight_early is not None else "")
    out = args.out or f"runs/bench/{spec.env}-{args.planner}{suffix}"
    summary = run_bench(spec, args.planner, out, episodes=args.episodes, checkpoint=args.checkpoint,
                        guardrail=args.guardrail, device=args.device, progress=not args.quiet, seed=args.seed,
                        route=args.route, readout_goal=args.readout_goal, budget_horizon=args.budget_horizon,
                        **args.planner_settings)
    print_summary(summary)
    print(f"results: {out}/summary.json, {out}/episodes.csv; videos: {out}/videos/")
    return 0
