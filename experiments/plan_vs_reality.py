"""Does the planner exploit the world model? Predictions for the actions it chose, checked against the simulator.

On held-out data windows `experiments/eval_world_model.py` measures how far the probe's read of a
predicted latent lands from the true block (the data's own actions). A planner picks the actions
whose predictions score best, and so favours the actions the model gets wrong in its favour. This
script runs benchmark episodes and, for every executed planned step, compares the probe's read of
the latent the plan predicted for the end of that step with the simulator's state there:

- `pred_error_mm`: predicted block position against the true one (the planner's own actions);
- `pred_move_mm` / `true_move_mm`: how far the model said the block would move in the step, and
  how far it moved;
- the same read of the real latent at the step's end (`real_read_error_mm`), the probe's floor.

    python -m experiments.plan_vs_reality --env pusht --planner gd --planner-settings '{"num_starts": 4, "iterations": 8}' \
        --checkpoint CKPT --episodes 10 --out plan_vs_reality.json

`--state-model FILE` checks the learned true-state model of `oracle_planning.py --oracle state-model`
instead (sampling planners): its predicted block is read directly, the members' mean.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

BLOCK = ("block_x", "block_y")


def _block_read(wm, readout, z: torch.Tensor) -> np.ndarray:
    """The probe's block position (env units) from latents ``[B, P, D]`` -> ``[B, 2]``."""
    with torch.inference_mode():
        return readout(z.to(wm.device)).cpu().numpy()


def run(spec, wm, agent, tasks, env) -> list[dict]:
    """Per executed planned step: true block before/after, predicted and real-latent reads after."""
    from wmplan.costs import probe_readout
    from wmplan.evaluate import reset_to_task

    names = list(env.state_names)
    readout = getattr(wm, "block_readout", None) or probe_readout(wm.probe, BLOCK)
    index = [names.index(n) for n in BLOCK]
    fs, rows = agent.controller.fs, []
    for task in tasks:
        obs, _, goal = reset_to_task(env, task)
        agent.reset()
        for k in range(spec.eval.budget // fs):  # whole planned steps
            start = env.get_state()[index]
            for i in range(fs):
                action = agent.act(obs, goal)
                if i == 0:  # the plan's latent for this planned step's end
                    predicted = _block_read(wm, readout, agent.controller.predicted_latent())[0]
                obs, *_ = env.step(action)
            true = env.get_state()[index]
            proprio = obs.get("proprio")
            real = _block_read(wm, readout, agent.controller.encode(obs["pixels"][None], None if proprio is None else proprio[None]))[0]
            rows.append({"seed": task.seed, "step": (k + 1) * fs, "start": start.tolist(), "true": true.tolist(),
                         "predicted": predicted.tolist(), "real_read": real.tolist()})
    return rows


def summarize(rows: list[dict], moved_mm: float = 5.0) -> dict:
    """Medians over all steps and over steps where the block moved more than `moved_mm`."""
    arr = {k: np.array([r[k] for r in rows]) for k in ("start", "true", "predicted", "real_read")}
    err = np.linalg.norm(arr["predicted"] - arr["true"], axis=1)
    pred_move = np.linalg.norm(arr["predicted"] - arr["start"], axis=1)
    true_move = np.linalg.norm(arr["true"] - arr["start"], axis=1)
    real = np.linalg.norm(arr["real_read"] - arr["true"], axis=1)
    moved = true_move > moved_mm

    def part(mask):
        return {"steps": int(mask.sum()), "pred_error_mm": _median(err[mask]), "real_read_error_mm": _median(real[mask]),
                "pred_move_mm": _median(pred_move[mask]), "true_move_mm": _median(true_move[mask])}

    return {"all": part(np.ones(len(rows), bool)), f"block_moved_over_{moved_mm:g}mm": part(moved),
            "block_still": part(~moved)}


def _median(x) -> float | None:
    return round(float(np.median(x)), 2) if len(x) else None


def main(argv=None) -> int:
    from wmplan.bench import REPO_ROOT, build_agent, load_model, load_spec
    from wmplan.cli_commands.bench import planner_settings
    from wmplan.evaluate import make_tasks
    import envs

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="pusht")
    p.add_argument("--planner", default="gd")
    p.add_argument("--planner-settings", type=planner_settings, default={})
    p.add_argument("--checkpoint", default=None, help="world-model checkpoint (default: the shipped one)")
    p.add_argument("--episodes", type=int, default=10, help="the benchmark's first N seeded tasks")
    p.add_argument("--state-model", default=None,
                   help="check the learned true-state model (experiments/state_dynamics.py --save) instead")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    spec = load_spec(args.env)
    cfg = dataclasses.replace(spec.eval, episodes=args.episodes, keep_out=spec.keep_out)
    env = envs.make(spec.env, **spec.env_kwargs)
    ckpt = REPO_ROOT / (args.checkpoint or spec.checkpoint)  # an absolute path stays as it is
    wm = load_model(ckpt, env, spec.env, "cpu")
    if args.state_model:
        from experiments.oracle_planning import LearnedStateModel

        wm = LearnedStateModel.from_file(wm, env, args.state_model)  # reads `env`, where the episodes run
    elif getattr(wm, "probe", None) is None:
        raise SystemExit(f"{ckpt} has no probe to read the block with")
    agent, settings = build_agent(spec, wm, args.planner, env.action_space, **args.planner_settings)
    tasks = make_tasks(cfg, env=env, env_name=spec.env)
    rows = run(dataclasses.replace(spec, eval=cfg), wm, agent, tasks, env)
    env.close()
    result = {"env": spec.env, "planner": args.planner, "planner_settings": settings, "checkpoint": str(ckpt),
              "state_model": args.state_model,
              "episodes": args.episodes, "summary": summarize(rows), "steps": rows}
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["summary"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
