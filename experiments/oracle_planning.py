"""Where does benchmark success get lost? Plan with the simulator in place of the world model.

    python experiments/oracle_planning.py --env pusht --oracle state --planner cem --episodes 20

A diagnostic, not a benchmark: the oracle *peeks* at the simulator by design, so its numbers are
upper bounds and never appear as benchmark rows. Everything else is the benchmark's own: the
same tasks (seeded, goals from held-out trajectories), step budget, MPC settings, planner
budget and cost terms (`wmplan.bench.build_agent`), with success judged by the simulator.
Only the model that scores candidates changes:

- ``--oracle latent``: each candidate is rolled out in a copy of the simulator from the true
  current state, its frames are rendered and encoded by the checkpoint's frozen encoder, and the
  benchmark's latent goal energy scores them. A perfect predictor of the same latents: the gap to
  the learned model is the world model's, what is left is the encoder's energy and the planner's.
- ``--oracle state``: the same rollouts scored by the distance between true states (agent and
  block position in units of 100 mm, the block angle as a point ``--radius`` mm from its centre).
  A perfect model *and* a perfect energy: what is left is the planner and its horizon.
- ``--oracle state-model --state-model FILE``: the state oracle's energy, but the candidates are
  rolled out by an MLP learned from the dataset on the true state (`experiments/state_dynamics.py
  --save FILE`) instead of the simulator. A learned model on a perfect representation: what it
  loses against the state oracle is what learned dynamics cost the planner, whatever the encoder.

Sampling planners only (the simulator has no gradients). Writes
experiments/results/<env>_oracle_<oracle>_<planner>[-readout].json with the learned model's benchmark
episodes on the same seeds beside it when they exist; episodes are logged as they finish in the
folder of the same name, and a re-run resumes from that log.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import torch

import envs
from experiments.state_dynamics import FEATURES, load_state_model, state_model_info
from wmplan.bench import REPO_ROOT, file_sha1, _fingerprint, build_agent, load_spec, mpc_fingerprint
from wmplan.cli_commands.bench import planner_settings
from wmplan.evaluate import evaluate, make_tasks, read_episodes
from wmplan.encoders import encoder_hash, load_encoder
from wmplan.probe import state_targets
from wmplan.results import hardware, wilson_interval
from wmplan.world_model import WorldModel

RESULTS = Path(__file__).parent / "results"


class SimulatorModel:
    """The world-model protocol (`wmplan.mpc`) answered by the simulator from the true current state.

    Args:
        wm: the learned world model whose frameskip, encoder and latent layout are kept.
        env: the env the episode runs in; read (never stepped) for its current and goal state.
        sim: another env of the same kind and settings, stepped for the candidates.
        oracle: "latent" (encode rendered frames) or "state" (true-state features).
        radius: the state oracle's lever arm for the block angle (mm).
    """

    rolls_out_candidates = False

    def __init__(self, wm: WorldModel, env, sim, oracle: str, radius: float = 60.0):
        if oracle not in ("latent", "state"):
            raise ValueError(f"oracle must be 'latent' or 'state', got {oracle!r}")
        if oracle == "state" and not hasattr(env, "block_pose"):
            raise ValueError("the state oracle reads push-T's state layout (agent xy, block pose); use --oracle latent")
        self.wm, self.env, self.oracle, self.radius = wm, env, oracle, radius
        self.sim = sim  # a second env of the same kind, stepped for the candidates
        self.frameskip, self.history, self.action_dim = wm.frameskip, 1, wm.action_dim
        self.device = torch.device("cpu")
        self.probe = wm.probe if oracle == "latent" else None
        self.visual_dim = wm.visual_dim if oracle == "latent" else 6
        self.latent_shape = wm.latent_shape if oracle == "latent" else (1, 6)
        self.steps_simulated = 0

    def _features(self, states: np.ndarray) -> torch.Tensor:
        """True-state latents ``[M, 1, 6]``: agent xy, block xy, block angle as a lever point (per 100 mm)."""
        agent, pose = states[:, 0:2], states[:, 2:5]
        lever = self.radius * np.stack([np.sin(pose[:, 2]), np.cos(pose[:, 2])], axis=1)
        return torch.as_tensor(np.concatenate([agent, pose[:, :2], lever], axis=1) / 100.0, dtype=torch.float32)[:, None]

    def encode(self, pixels, proprio=None) -> torch.Tensor:
        if self.oracle == "latent":
            return self.wm.encode(pixels, proprio)
        goal = np.array_equal(np.asarray(pixels)[0], self.env.goal_observation()["pixels"])
        return self._features((self.env.goal_state if goal else self.env.get_state())[None])

    def rollout(self, z_hist, actions: torch.Tensor, a_past=None) -> torch.Tensor:
        """``[M, H, P, D]`` latents of candidates ``[M, H, fs*A]`` simulated from the env's true state."""
        start, sim = self.env.get_state(), self.sim
        M, H = actions.shape[:2]
        steps = actions.detach().cpu().numpy().reshape(M, H, self.frameskip, -1).astype(np.float64)
        states, frames, proprio = [], [], []
        for m in range(M):
            sim.set_state(start)
            for h in range(H):
                for a in steps[m, h]:
                    sim._apply_action(np.clip(a, sim.action_space.low, sim.action_space.high))
                states.append(sim.get_state())
                if self.oracle == "latent":
                    obs = sim._observation()
                    frames.append(obs["pixels"])
                    proprio.append(obs["proprio"])
        self.steps_simulated += M * H * self.frameskip
        if self.oracle == "state":
            return self._features(np.array(states)).reshape(M, H, 1, 6)
        with torch.inference_mode():
            z = self.wm.encode(torch.as_tensor(np.array(frames)), torch.as_tensor(np.array(proprio)))
        return z.reshape(M, H, *z.shape[1:])


class LearnedStateModel(SimulatorModel):
    """The state oracle with the simulator's rollouts replaced by learned true-state MLPs.

    Each re-plan starts from the env's true state (as the state oracle does); each MLP of the
    `experiments.state_dynamics` ensemble advances it one planned step per call on its own
    trajectory, and the predicted agent and block pose are scored with the state oracle's features.
    Member k's prediction is token k of the latent ``[.., K, 6]`` and the goal is the same on every
    token, so the L2 goal energy is the members' mean squared distance to the goal: the distance of
    their mean plus their spread, a penalty where the members disagree (PETS, Chua et al. 2018).

    Args:
        wm: the learned world model whose frameskip and action size are kept.
        env: the env the episode runs in; read (never stepped) for its current and goal state.
        members: `experiments.state_dynamics.load_state_model`'s MLPs (one or more).
        radius: the block-angle lever arm (mm), as the state oracle's.
    """

    def __init__(self, wm: WorldModel, env, members, radius: float = 60.0):
        super().__init__(wm, env, None, "state", radius)
        self.members = list(members)
        self.latent_shape = (len(self.members), 6)

    @classmethod
    def from_file(cls, wm: WorldModel, env, path, radius: float = 60.0) -> "LearnedStateModel":
        """The ensemble `experiments/state_dynamics.py --save` wrote to `path`, reading `env`."""
        return cls(wm, env, load_state_model(path), radius)

    def encode(self, pixels, proprio=None) -> torch.Tensor:
        """The state oracle's features ``[1, K, 6]``, the same on each member's token."""
        return super().encode(pixels, proprio).expand(-1, len(self.members), -1)

    def block_readout(self, z: torch.Tensor) -> torch.Tensor:
        """The members' mean block position (mm) ``[..., 2]`` from latents ``[..., K, 6]``."""
        return z[..., 2:4].mean(-2) * 100.0

    def rollout(self, z_hist, actions: torch.Tensor, a_past=None) -> torch.Tensor:
        """``[M, H, K, 6]`` state-oracle latents of candidates ``[M, H, fs*A]`` rolled out by each member."""
        M, H = actions.shape[:2]
        start = torch.as_tensor(state_targets(self.env.get_state()[None], self.env.state_names, FEATURES))
        steps, tokens = actions.detach().clamp(-1.0, 1.0), []  # the env clips its actions the same way
        with torch.no_grad():
            for member in self.members:
                x, pred = start.expand(M, -1), []
                for h in range(H):
                    x = member(x, steps[:, h])  # [M, 8]: agent xy, block xy, sin/cos of the angle, agent velocity
                    pred.append(x)
                tokens.append(torch.stack(pred, 1))  # [M, H, 8]
        x = torch.stack(tokens, 2)  # [M, H, K, 8]
        lever = self.radius * torch.nn.functional.normalize(x[..., 4:6], dim=-1)
        self.steps_simulated += M * H * self.frameskip
        return torch.cat([x[..., 0:4], lever], -1) / 100.0


def state_energy(agent_weight: float = 1.0, agent_weight_at_end: float | None = None, steps="last") -> list:
    """The state oracles' goal energy split into the block's part and the agent's, plus the action bounds.

    With both weights 1 it equals the single goal energy over the six features. `agent_weight` scales
    the agent's distance (its squared term by the square) while the plan ends before the episode does,
    `agent_weight_at_end` (default: the same) in the plans that end it (`wmplan.costs.CostTerm.early_weight`).
    """
    from wmplan.costs import ActionBounds, GoalEnergy

    end = agent_weight if agent_weight_at_end is None else agent_weight_at_end
    if min(agent_weight, end) < 0:
        raise ValueError(f"agent weights must be >= 0, got {agent_weight}, {end}")
    early = None if agent_weight_at_end is None else 2 / 6 * agent_weight**2
    return [GoalEnergy(weight=4 / 6, steps=steps, features=(2, 6)),  # block xy and angle lever: 4 of the 6 features
            GoalEnergy(name="goal_agent", weight=2 / 6 * end**2, early_weight=early, steps=steps, features=(0, 2)),
            ActionBounds()]


def agent_weighted_energy(agent_weight: float = 1.0, agent_weight_at_end: float | None = None, steps="last") -> list | None:
    """`state_energy` with these agent weights, or None where both are the defaults (the caller's spec energy holds)."""
    if agent_weight == 1.0 and agent_weight_at_end is None:
        return None
    return state_energy(agent_weight, agent_weight_at_end, steps)


def learned_same_seeds(env: str, run: str, seeds: set, readout_goal: dict | None = None,
                       results: Path = RESULTS) -> dict | None:
    """The learned model's benchmark result on the same seeds (run `<planner>[-readout]`, with the same
    readout goal) with the checkpoint_sha1 it was measured with, or None while the benchmark lacks a seed."""
    path = results / "bench" / f"{env}-{run}" / "episodes.jsonl"
    summary = path.with_name("summary.json")
    wanted = json.loads(json.dumps(readout_goal))  # as summary.json stores it (tuples become lists)
    if not path.exists() or not summary.exists():
        return None
    bench = json.loads(summary.read_text())
    if bench.get("readout_goal") != wanted:
        return None
    rows = [r for r in read_episodes(path) if r.get("seed") in seeds]
    return _summary(rows) | {"checkpoint_sha1": bench.get("checkpoint_sha1")} if len(rows) == len(seeds) else None


def _summary(episodes: list[dict]) -> dict:
    wins = sum(bool(e["success"]) for e in episodes)
    lo, hi = wilson_interval(wins, len(episodes))
    keys = sorted({k for e in episodes for k in e["metrics"] if isinstance(e["metrics"][k], (int, float))})
    return {"episodes": len(episodes), "success": wins / len(episodes), "ci95": [lo, hi],
            "metrics": {k: float(np.mean([e["metrics"][k] for e in episodes])) for k in keys}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="pusht")
    p.add_argument("--oracle", choices=("latent", "state", "state-model"), default="state")
    p.add_argument("--state-model", default=None, help="state-model oracle: the MLP `state_dynamics.py --save` wrote")
    p.add_argument("--planner", default="cem", choices=("cem", "icem", "mppi"))
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--radius", type=float, default=60.0, help="state oracle: block-angle lever arm (mm)")
    p.add_argument("--agent-weight", type=float, default=1.0,
                   help="state oracles: scale on the agent's distance in the energy, against the block's (default 1)")
    p.add_argument("--agent-weight-at-end", type=float, default=None,
                   help="state oracles: the agent's scale in the plans that end the episode (needs the budget "
                        "horizon, --mpc-settings '{\"budget\": 50}'); --agent-weight then holds before them")
    p.add_argument("--planner-settings", type=planner_settings, default={},
                   help="JSON overrides of the benchmark's planner settings (results are then not comparable)")
    p.add_argument("--mpc-settings", type=planner_settings, default={},
                   help='JSON overrides of the benchmark\'s MPC loop, e.g. \'{"horizon": 8}\' (a test of the loop, not '
                        'of the model: results are then not comparable)')
    p.add_argument("--readout-goal", action="store_true",
                   help="latent oracle: add the benchmark's probe-read goal term (`wmplan bench --readout-goal`)")
    p.add_argument("--pool-grid", type=int, default=None,
                   help="latent oracle: pool the encoder's patch tokens to this grid instead of the checkpoint's "
                        "(0: every patch); a test of the energy on finer or coarser tokens")
    p.add_argument("--encoder", default=None,
                   help="latent oracle: plan on this encoder file's latents instead of the checkpoint's (e.g. a "
                        "`wmplan fit-projection` output); a test of an energy before a predictor is trained on it")
    p.add_argument("--proprio-weight", type=float, default=None,
                   help="weight of the proprio goal term (default: the benchmark's)")
    p.add_argument("--proprio-weight-early", type=float, default=None,
                   help="latent oracle: the proprio goal weight while a plan ends before the episode (needs the "
                        "budget horizon); `wmplan bench --proprio-weight-early`")
    p.add_argument("--checkpoint", default=None, help="world model (default: the benchmark's)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="result file; its episodes log lies in the folder of the same name")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if (args.oracle == "state-model") != (args.state_model is not None):
        p.error("--oracle state-model and --state-model FILE go together")
    staged = args.agent_weight_at_end is not None
    if (args.agent_weight != 1.0 or staged) and args.oracle == "latent":
        p.error("--agent-weight applies to the state oracles (the latent energy's agent term is --proprio-weight)")
    if (staged or args.proprio_weight_early is not None) and args.mpc_settings.get("budget") is None:
        p.error("--agent-weight-at-end and --proprio-weight-early need the budget horizon "
                "(--mpc-settings '{\"budget\": 50}'): without it no plan knows it ends the episode")
    if args.proprio_weight_early is not None and args.oracle != "latent":
        p.error("--proprio-weight-early needs --oracle latent (the state oracles stage --agent-weight-at-end)")
    if args.readout_goal and args.oracle != "latent":
        p.error("--readout-goal needs --oracle latent (the state oracle has no latents for the probe to read)")
    if args.pool_grid is not None and (args.oracle != "latent" or args.readout_goal):
        p.error("--pool-grid needs --oracle latent without --readout-goal (the probe reads the checkpoint's grid)")
    if args.encoder is not None and (args.oracle != "latent" or args.readout_goal or args.pool_grid is not None):
        p.error("--encoder needs --oracle latent without --readout-goal or --pool-grid")
    torch.set_num_threads(args.threads)
    spec = load_spec(args.env)
    if args.proprio_weight is not None:
        spec = dataclasses.replace(spec, proprio_weight=args.proprio_weight)
    if args.proprio_weight_early is not None:
        spec = dataclasses.replace(spec, proprio_weight_early=args.proprio_weight_early)
    try:
        spec = dataclasses.replace(spec, mpc=dataclasses.replace(spec.mpc, **args.mpc_settings))
    except (TypeError, ValueError) as err:
        p.error(f"--mpc-settings: {err} (fields: {', '.join(f.name for f in dataclasses.fields(spec.mpc))})")
    env = envs.make(spec.env, **spec.env_kwargs)
    wm_path = REPO_ROOT / (args.checkpoint or spec.checkpoint)
    wm = WorldModel.load(wm_path)
    if args.pool_grid is not None:
        wm.encoder, wm.probe = load_encoder(wm_path, pool_grid=args.pool_grid), None
    if args.encoder is not None:
        wm.encoder, wm.probe = load_encoder(args.encoder), None
    grid = "" if args.pool_grid is None else f"-grid{math.isqrt(wm.latent_shape[0])}"
    if args.oracle == "state-model":
        model = LearnedStateModel.from_file(wm, env, args.state_model, args.radius)
    else:
        model = SimulatorModel(wm, env, envs.make(spec.env, **spec.env_kwargs), args.oracle, args.radius)
    terms = agent_weighted_energy(args.agent_weight, args.agent_weight_at_end, spec.goal_steps)
    weighted = terms is not None  # the latent oracle refused both above
    agent, settings = build_agent(spec, model, args.planner, env.action_space, readout_goal=args.readout_goal,
                                  terms=terms, **args.planner_settings)
    cfg = dataclasses.replace(spec.eval, episodes=args.episodes, keep_out=spec.keep_out)  # as `wmplan bench` does
    tasks = make_tasks(cfg, env=env, env_name=spec.env)
    run = args.planner + ("-readout" if args.readout_goal else "")
    loop = "".join(f"-{k}{v}" for k, v in sorted(args.mpc_settings.items()))
    loop += f"-enc{encoder_hash(wm.encoder)[:8]}" if args.encoder else ""  # never the default run's file
    loop += f"-pw{args.proprio_weight:g}" if args.proprio_weight is not None else ""
    loop += f"-pwe{args.proprio_weight_early:g}" if args.proprio_weight_early is not None else ""
    loop += f"-aw{args.agent_weight:g}" if weighted else ""
    loop += f"-end{args.agent_weight_at_end:g}" if staged else ""
    out = Path(args.out) if args.out else RESULTS / f"{args.env}_oracle_{args.oracle}_{run}{grid}{loop}.json"
    state_sha1 = file_sha1(args.state_model) if args.state_model else None
    fingerprint = _fingerprint(args.env, args.oracle, args.planner, settings, args.radius, file_sha1(wm_path),
                               dataclasses.asdict(cfg) | {"episodes": None, "videos": None}, mpc_fingerprint(spec.mpc),
                               *([dataclasses.asdict(spec.readout_goal)] if args.readout_goal else []),
                               *([{"pool_grid": args.pool_grid}] if args.pool_grid is not None else []),
                               *([{"encoder": encoder_hash(wm.encoder)}] if args.encoder else []),
                               *([{"proprio_weight": args.proprio_weight}] if args.proprio_weight is not None else []),
                               *([{"proprio_weight_early": args.proprio_weight_early}]
                                 if args.proprio_weight_early is not None else []),
                               *([{"state_model": state_sha1}] if args.state_model else []),
                               *([{"agent_weight": args.agent_weight}] if args.agent_weight != 1.0 else []),
                               *([{"agent_weight_at_end": args.agent_weight_at_end}] if staged else []))
    log_dir = out.with_suffix("")  # episodes.jsonl: an interrupted run resumes without redoing episodes
    episodes = evaluate(env, agent, tasks, dataclasses.replace(cfg, videos=0), out_dir=log_dir,
                        fingerprint=fingerprint, progress=not args.quiet)
    seeds = {t.seed for t in tasks}
    overridden = (args.planner_settings or args.mpc_settings or args.checkpoint or args.encoder
                  or args.proprio_weight is not None or args.proprio_weight_early is not None or weighted)
    learned = None if overridden else learned_same_seeds(
        args.env, run, seeds, dataclasses.asdict(spec.readout_goal) if args.readout_goal else None)
    result = {"env": args.env, "oracle": args.oracle, "planner": args.planner, "settings": settings,
              "overrides": args.planner_settings, "mpc_overrides": args.mpc_settings,
              "readout_goal": dataclasses.asdict(spec.readout_goal) if args.readout_goal else None,
              "radius_mm": args.radius if args.oracle != "latent" else None,
              "agent_weight": args.agent_weight if args.oracle != "latent" else None,
              "agent_weight_at_end": args.agent_weight_at_end,
              "state_model": ({"file": args.state_model, "sha1": state_sha1,
                               "members": len(model.members), "fit": state_model_info(args.state_model)}
                              if args.state_model else None),
              "tokens_per_frame": wm.latent_shape[0] if args.oracle == "latent" else None,
              "encoder_hash": encoder_hash(wm.encoder) if args.oracle == "latent" else None,  # what the energy saw
              "pool_grid_override": args.pool_grid, "encoder_override": args.encoder,
              "proprio_weight": spec.proprio_weight, "proprio_weight_override": args.proprio_weight,
              "proprio_weight_early": args.proprio_weight_early,
              "protocol": dataclasses.asdict(cfg), "mpc": dataclasses.asdict(spec.mpc), "hardware": hardware(),
              "oracle_result": _summary(episodes),
              "checkpoint_sha1": file_sha1(wm_path), "learned_model_same_seeds": learned,
              "episodes": [{k: v for k, v in e.items() if k != "replan_times"} | {"replan_median_s": float(np.median(e["replan_times"]))}
                           for e in episodes]}
    out.write_text(json.dumps(result, indent=2, default=float))
    print(json.dumps({k: result[k] for k in ("oracle_result", "learned_model_same_seeds")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
