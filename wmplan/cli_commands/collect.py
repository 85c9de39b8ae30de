"""`wmplan collect`: record expert or random trajectories to an HDF5 dataset (resumable)."""

from __future__ import annotations

import json
import time

NAME = "collect"
HELP = "collect a trajectory dataset (re-run the same command to resume an interrupted collection)"


def add_arguments(p):
    p.add_argument("--env", required=True, help="environment: pusht, maze or chips (or a gymnasium id)")
    p.add_argument("--episodes", type=int, required=True, help="number of episodes")
    p.add_argument("--out", required=True, help="dataset directory")
    p.add_argument("--steps", type=int, default=None, help="env steps per episode (default: the env's)")
    p.add_argument("--policy", default="expert", choices=["expert", "random"], help="data policy")
    p.add_argument("--seed", type=int, default=0, help="episode i is seeded with seed + i")
    p.add_argument("--workers", type=int, default=1, help="parallel processes")
    p.add_argument("--image-size", type=int, default=64, help="frame side in pixels")
    p.add_argument("--policy-kwargs", default="{}", help='JSON dict for the policy, e.g. \'{"noise": 20}\'')
    p.add_argument("--env-kwargs", default="{}", help='JSON dict for the env, e.g. \'{"layout": "random"}\'')
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _json_dict(flag: str, text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{flag} must be a JSON object: {err}") from err
    if not isinstance(value, dict):
        raise ValueError(f"{flag} must be a JSON object, got {text!r}")
    return value


def run(args) -> int:
    import envs
    from wmplan.data.collect import CollectConfig, collect

    envs.entry(args.env)  # unknown names fail here, before any work
    policy_kwargs, env_kwargs = _json_dict("--policy-kwargs", args.policy_kwargs), _json_dict("--env-kwargs", args.env_kwargs)
    cfg = CollectConfig(env_kwargs=env_kwargs, env=args.env, out=args.out, episodes=args.episodes, steps=args.steps, policy=args.policy,
                        seed=args.seed, workers=args.workers, image_size=args.image_size, policy_kwargs=policy_kwargs)
    start = time.perf_counter()
    out = collect(cfg, progress=not args.quiet)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"collected {cfg.episodes} episodes into {out} ({size / 1e6:.1f} MB) in {time.perf_counter() - start:.1f} s")
    return 0
