"""Benchmarks: env + checkpoint + planner + costs composed, evaluated under the honest protocol.

Per-environment defaults (`BenchSpec`) live in `experiments/configs/<env>.py`; `wmplan bench` and
notebooks call `run_bench`, which writes `summary.json`, `episodes.csv`, `episodes.jsonl` (resume
log) and GIF videos to the output directory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wmplan.checkpoint import omit_later_defaults
from wmplan.device import check_device
from wmplan.evaluate import EvalConfig, KeepOutRegion, evaluate, make_tasks
from wmplan.mpc import MPCConfig
from wmplan.results import hardware, markdown_table, summarize, write_results

__all__ = ["BenchSpec", "RouteSpec", "ReadoutGoalSpec", "load_spec", "build_agent", "build_baseline", "BASELINES", "load_model",
           "run_bench", "REPO_ROOT"]

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class RouteSpec:
    """The route energy (`wmplan.route`) an env's benchmark adds with ``--route``."""

    graph: str  # route graph file (`wmplan route-graph`), relative to the repo root or absolute
    weight: float = 1.0  # relative to the visual goal energy's weight of 1
    reach: float | None = None  # longest straight leg, env units (None: 2.5 x node spacing)


@dataclass(frozen=True)
class ReadoutGoalSpec:
    """The probe-read goal term (`wmplan.costs.ReadoutGoal`) an env's benchmark adds with ``--readout-goal``."""

    names: tuple  # probe outputs compared with the goal's, e.g. ("block_x", "block_y")
    scale: float | tuple = 1.0  # divides each difference (env units -> unitless)
    weight: float = 1.0  # relative to the visual goal energy's weight of 1

    def __post_init__(self):
        if not self.names:
            raise ValueError("a readout goal needs at least one probe output name")
        if isinstance(self.scale, (tuple, list)) and len(self.scale) != len(self.names):
            raise ValueError(f"readout goal: {len(self.scale)} scales for {len(self.names)} names {list(self.names)}; "
                             "give one scale per name or a single number")


@dataclass(frozen=True)
class BenchSpec:
    """Everything that defines one environment's benchmark."""

    env: str  # env short name
    eval: EvalConfig  # protocol: episodes, budget, goals
    mpc: MPCConfig  # receding-horizon settings
    checkpoint: str  # world-model checkpoint, relative to the repo root or absolute
    planners: dict = field(default_factory=dict)  # planner name -> setting overrides for this env
    metric_keys: tuple = ()  # info keys averaged in the table
    keep_out: KeepOutRegion | None = None  # guardrail region (agent position, env units)
    keep_out_margin: float = 0.1  # the planner's clearance beyond the region's radius, as a fraction of it
    env_kwargs: dict = field(default_factory=dict)  # passed to envs.make
    goal_steps: str = "all"  # goal energy on every predicted step ("all") or the last one ("last")
    proprio_weight: float = 0.1  # weight of the proprio part of the goal energy (visual part: 1)
    # its weight while a plan ends before the episode does (needs the budget horizon; None: proprio_weight
    # throughout). The agent can still reach its own goal position after such a plan: `CostTerm.early_weight`
    proprio_weight_early: float | None = None
    route: RouteSpec | None = None  # route energy for `--route` (needs a probe)
    readout_goal: ReadoutGoalSpec | None = None  # probe-read goal term for `--readout-goal` (needs a probe)


def load_spec(env: str) -> BenchSpec:
    """The `BENCH` spec of `experiments/configs/<env>.py`."""
    import envs

    name = envs.entry(env).name
    try:
        module = importlib.import_module(f"experiments.configs.{name}")
    except ModuleNotFoundError as err:
        raise ValueError(f"no benchmark config for {name!r} (experiments/configs/{name}.py)") from err
    return module.BENCH


def _costs(spec: BenchSpec, wm, guardrail: bool, route: bool = False, readout_goal: bool = False):
    from wmplan.costs import ActionBounds, GoalEnergy, KeepOut, ReadoutGoal, probe_readout

    vis, dim = wm.visual_dim, wm.latent_shape[1]
    terms = [GoalEnergy(steps=spec.goal_steps, features=(0, vis)), ActionBounds()]
    if dim > vis and (spec.proprio_weight > 0 or spec.proprio_weight_early):
        terms.append(GoalEnergy(name="goal_proprio", weight=spec.proprio_weight, early_weight=spec.proprio_weight_early,
                                steps=spec.goal_steps, features=(vis, dim)))
    if not (guardrail or route or readout_goal):
        return terms, None
    if guardrail and spec.keep_out is None:
        raise ValueError(f"{spec.env} has no keep-out region configured")
    if route and spec.route is None:
        raise ValueError(f"{spec.env} has no route graph configured (BenchSpec.route)")
    if readout_goal and spec.readout_goal is None:
        raise ValueError(f"{spec.env} has no readout goal configured (BenchSpec.readout_goal)")
    if getattr(wm, "probe", None) is None:
        raise ValueError("the keep-out guardrail, the route energy and the readout goal read the latents with a probe; "
                         "use a checkpoint with one (`wmplan train` fits it)")
    if readout_goal:
        rg = spec.readout_goal
        terms.append(ReadoutGoal(probe_readout(wm.probe, rg.names), name="readout_goal", weight=rg.weight,
                                 scale=rg.scale, steps=spec.goal_steps))
    readout = probe_readout(wm.probe, ("agent_x", "agent_y"))
    region = spec.keep_out
    if guardrail:
        terms.append(KeepOut(centers=((region.x, region.y),), radii=region.radius, margin=spec.keep_out_margin * region.radius, mode="constraint"))
    if route:
        from wmplan.route import RouteEnergy, RouteGraph

        avoid = [(region.x, region.y, region.radius * (1 + spec.keep_out_margin))] if guardrail else []
        terms.append(RouteEnergy(RouteGraph.load(_resolve(spec.route.graph)), weight=spec.route.weight,
                                 steps=spec.goal_steps, reach=spec.route.reach, exclude=avoid))
    return terms, readout


def build_agent(spec: BenchSpec, wm, planner: str, action_space, guardrail: bool = False, route: bool = False,
                readout_goal: bool = False, terms: list | None = None, **planner_cfg):
    """An `MPCAgent` for `spec` with the env's planner defaults plus `planner_cfg` overrides; `guardrail`
    adds the keep-out constraint, `route` the route energy, `readout_goal` the probe-read goal term.
    `terms` replaces the spec's cost terms altogether (diagnostics such as the state oracle's energies)."""
    from agents.mpc_agent import MPCAgent
    from wmplan.planners import make_planner

    settings = {**spec.planners.get(planner, {}), **planner_cfg}
    if terms is not None and (guardrail or route or readout_goal):
        raise ValueError("terms replaces the spec's costs; it cannot be combined with guardrail, route or readout_goal")
    terms, readout = (list(terms), None) if terms is not None else _costs(spec, wm, guardrail, route, readout_goal)
    plan = make_planner(planner, device=str(wm.device), **settings)
    return MPCAgent(wm, plan, terms, spec.mpc, action_space=action_space, readout=readout), settings


BASELINES = ("zero", "random")  # floors that use no world model: what planning has to beat


def build_baseline(name: str, action_space, seed: int = 0):
    """A floor policy with the agent interface: "zero" (the zero action) or "random" (uniform random actions,
    the same seeded sequence every episode, as a planner's seeded generator)."""
    from agents.policies import RandomPolicy, ZeroPolicy

    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}")
    return ZeroPolicy(action_space) if name == "zero" else RandomPolicy(action_space, seed=seed)


def _resolve(path: str) -> Path:
    return REPO_ROOT / path  # pathlib keeps an absolute `path` as it is


def file_sha1(path) -> str:
    """SHA-1 of a file (a path relative to the repository root is resolved there)."""
    return hashlib.sha1(_resolve(str(path)).read_bytes()).hexdigest()


def _fingerprint(*parts) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def mpc_fingerprint(mpc: MPCConfig) -> dict:
    """The MPC settings as a fingerprint part. `budget` came later: left out while unset, so episode
    logs written before it existed still resume."""
    return omit_later_defaults(dataclasses.asdict(mpc), {"budget": None})


def save_gif(path, frames, duration: float = 0.1) -> None:
    """Frames ``[H, W, 3]`` uint8 as a looping GIF, each pixel drawn 3x3 (64 px frames are tiny)."""
    import imageio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    big = [np.kron(f, np.ones((3, 3, 1), dtype=np.uint8)) for f in frames]
    imageio.mimsave(path, big, duration=duration, loop=0)


def _decoder_beside(checkpoint: Path, wm):
    """The pixel decoder in `decoder.pt` beside the checkpoint, for videos of imagined frames; None if
    there is none, or (with a warning) if it was fitted on another encoder. Results never depend on it."""
    from wmplan.checkpoint import CheckpointError
    from wmplan.decoder import load_decoder

    path = checkpoint.with_name("decoder.pt")
    if not path.is_file():
        return None
    try:
        return load_decoder(path, wm)
    except CheckpointError as err:
        warnings.warn(f"videos without imagined frames: {err}", stacklevel=2)
        return None


def load_model(ckpt: Path, env, env_name: str, device: str):
    """The checkpoint's world model, checked against the env, with the pixel decoder beside it (or None)."""
    import envs
    from wmplan.world_model import WorldModel

    wm = WorldModel.load(ckpt, device=device, env=envs.entry(env_name).name, image_size=env.image_size,
                         action_dim=env.action_space.shape[0])
    wm.decoder = _decoder_beside(ckpt, wm)
    return wm


def _checked_checkpoint(path: str) -> Path:
    """The checkpoint file `path` resolves to, or a FileNotFoundError that says what to pass."""
    ckpt = _resolve(path)
    if not ckpt.is_file():
        what = "is a directory" if ckpt.is_dir() else "does not exist"
        raise FileNotFoundError(f"checkpoint {ckpt} {what}; pass a world_model.pt written by `wmplan train` "
                                "(or leave out --checkpoint for the shipped one)")
    return ckpt


def route_graph_for(spec: BenchSpec, ckpt: Path) -> str:
    """The route graph for checkpoint `ckpt`: `route_graph.pt` beside it (where the README's `wmplan route-graph
    --out` puts it), else the spec's. Its nodes are positions in env units (read by a probe), so the spec's
    graph serves any checkpoint of the same layout; one built from your own data and probe fits it better."""
    if spec.route is None:
        raise ValueError(f"{spec.env} has no route graph configured (BenchSpec.route)")
    beside = ckpt.parent / "route_graph.pt"
    if beside.is_file() and beside.resolve() != _resolve(spec.route.graph).resolve():
        return str(beside)
    return spec.route.graph  # as configured, so results name it as before


def with_budget_horizon(spec: BenchSpec, budget: int | None) -> BenchSpec:
    """`spec` whose MPC loop knows the episode's step `budget` (None: it does not), so the last re-plans
    plan only up to the episode's end; refused for an early proprio weight without one."""
    if budget is not None:
        spec = dataclasses.replace(spec, mpc=dataclasses.replace(spec.mpc, budget=budget))
    if spec.proprio_weight_early is not None and spec.mpc.budget is None:
        raise ValueError("an early proprio weight needs the budget horizon (--budget-horizon): without it no plan "
                         "knows whether it ends the episode")
    return spec


def run_bench(spec: BenchSpec, planner: str, out_dir, episodes: int | None = None, checkpoint: str | None = None,
              guardrail: bool = False, device: str = "cpu", progress: bool = True, seed: int | None = None,
              route: bool = False, readout_goal: bool = False, budget_horizon: bool = False, **planner_cfg) -> dict:
    """Run one (env, planner) benchmark and write its result files. Returns the summary dict.

    `planner` may also name a floor in `BASELINES` ("zero", "random"): the same tasks run without a
    world model, so a table shows what planning adds over acting blind.
    `budget_horizon` tells the MPC loop the episode's step budget, so plans end with the episode
    (`MPCConfig.budget`: the horizon shrinks over the last re-plans)."""
    import envs

    cfg = spec.eval if episodes is None else dataclasses.replace(spec.eval, episodes=episodes)
    cfg = dataclasses.replace(cfg, keep_out=spec.keep_out, seed=cfg.seed if seed is None else seed)
    spec = with_budget_horizon(spec, cfg.budget if budget_horizon else None)
    env = envs.make(spec.env, **spec.env_kwargs)
    if planner in BASELINES:
        if guardrail or route or readout_goal or budget_horizon or planner_cfg:
            raise ValueError(f"the {planner!r} baseline uses no model, planner or costs: drop the guardrail, route, "
                             "readout-goal, budget-horizon and planner-settings options")
        ckpt, ckpt_sha1, settings, wm = None, None, {}, None
        agent = build_baseline(planner, env.action_space, seed=cfg.seed)
    else:
        check_device(device)
        ckpt = _checked_checkpoint(checkpoint or spec.checkpoint)
        if route:
            spec = dataclasses.replace(spec, route=dataclasses.replace(spec.route, graph=route_graph_for(spec, ckpt)))
        ckpt_sha1, wm = file_sha1(ckpt), load_model(ckpt, env, spec.env, device)
        agent, settings = build_agent(spec, wm, planner, env.action_space, guardrail, route, readout_goal, **planner_cfg)
    tasks = make_tasks(cfg, env=env, env_name=spec.env)
    out = Path(out_dir)
    fingerprint = _fingerprint(spec.env, planner, settings, ckpt_sha1, guardrail,
                               spec.goal_steps, spec.proprio_weight,
                               {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("episodes", "videos")},
                               mpc_fingerprint(spec.mpc),  # the episode count may grow on resume
                               *([spec.keep_out_margin] if guardrail else []),
                               *([dataclasses.asdict(spec.route), file_sha1(spec.route.graph)] if route else []),
                               *([dataclasses.asdict(spec.readout_goal)] if readout_goal else []),
                               *([{"proprio_weight_early": spec.proprio_weight_early}]
                                 if spec.proprio_weight_early is not None else []))
    records = evaluate(env, agent, tasks, cfg, out_dir=out, fingerprint=fingerprint, progress=progress,
                       on_video=lambda i, frames: save_gif(out / "videos" / f"episode_{i:03d}.gif", frames))
    label = (planner + "".join(f" {k}={v}" for k, v in sorted(planner_cfg.items())) + (" + route" if route else "")
             + (_readout_label(spec.readout_goal, spec.env) if readout_goal else "") + (" + keep-out" if guardrail else "")
             + (" + budget horizon" if budget_horizon else "")
             + (f", proprio w {spec.proprio_weight_early:g} before the last plans" if spec.proprio_weight_early is not None else ""))
    label = f"{planner} actions (no model)" if planner in BASELINES else label
    row = {"env": spec.env, "planner": label,
           **summarize(records, spec.metric_keys)}
    summary = {"row": row, "metric_keys": list(spec.metric_keys), "hardware": hardware() | {"device": device},
               "planner_settings": settings, "checkpoint": ckpt and str(ckpt), "checkpoint_sha1": ckpt_sha1,
               "baseline": planner in BASELINES, "guardrail": guardrail,
               "decoder": wm is not None and wm.decoder is not None,  # videos show imagined frames (results never depend on it)
               **({"keep_out_margin": spec.keep_out_margin} if guardrail else {}),
               **({"route": dataclasses.asdict(spec.route)} if route else {}),
               **({"readout_goal": dataclasses.asdict(spec.readout_goal)} if readout_goal else {}),
               "protocol": f"{cfg.episodes} seeded episodes, {cfg.budget} env steps each, goals: {cfg.goal_source}"
                           + (f" k={cfg.goal_offset}" if cfg.goal_source != "env" else "")
                           + "; success judged by the simulator at the end of the budget",
               "eval": dataclasses.asdict(cfg), "mpc": dataclasses.asdict(spec.mpc),
               "goal_steps": spec.goal_steps, "proprio_weight": spec.proprio_weight,
               "proprio_weight_early": spec.proprio_weight_early}
    write_results(out, summary, records)
    env.close()
    return summary


def _readout_label(rg: ReadoutGoalSpec, env: str) -> str:
    """`` + readout goal w=3``, with the read quantities when they differ from the env config's (or it has none)."""
    try:
        configured = load_spec(env).readout_goal
    except ValueError:  # a spec built in code for an env without a config: never fail after the episodes ran
        configured = None
    same = configured is not None and tuple(rg.names) == tuple(configured.names)
    return f" + readout goal w={rg.weight:g}" + ("" if same else f" [{', '.join(map(str, rg.names))}]")


def print_summary(summary: dict) -> None:
    """The run's table row (or `summary["rows"]`, rows of runs on the same episodes), hardware and protocol."""
    print(markdown_table(summary.get("rows", [summary["row"]]), summary["metric_keys"]))
    hw = summary["hardware"]
    print(f"\nhardware: {hw['cpu']}, {hw['torch_threads']} torch threads, device {hw['device']}; {summary['protocol']}")
