"""The receding-horizon loop, written once for every planner and any world model.

Per planned step the world model advances `frameskip` env steps, so a plan ``[B, H, A_fs]`` holds
``A_fs = frameskip * A`` env actions per step. Each re-plan: roll the real frame history (T latents
at frameskip spacing, with the planned-step actions between them) forward under the candidates,
score them with the costs, execute the first `execute_steps` planned steps (split into env actions),
then re-plan warm-started from the previous plan shifted by what was executed.

World-model protocol: ``encode(pixels [B, H, W, 3] uint8, proprio [B, P] | None) -> z [B, P', D]``,
``rollout(z_hist [B, T, P', D], actions [B, H, A_fs], a_past [B, T-1, A_fs] | None) -> [B, H, P', D]``
and attributes `frameskip`, `action_dim`, `history`, `device`; optionally `rolls_out_candidates = True`
when `rollout` also takes ``actions [B, N, H, A_fs]`` (N candidates per history) -> ``[B, N, H, P', D]``.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

from wmplan.costs import CostContext
from wmplan.planners.base import CostOutput, Planner, PlanResult, flops_per_replan, shift_plan

__all__ = ["MPCConfig", "MPCController", "LatentObjective", "ReplanRecord"]


@dataclass(frozen=True)
class MPCConfig:
    """Settings of the receding-horizon loop."""

    horizon: int = 5  # H, planned steps (each = frameskip env steps)
    execute_steps: int = 1  # k, planned steps executed before re-planning (1 <= k <= H)
    warm_start: bool = True  # start from the previous plan shifted by k (else from the box centre)
    pad: str = "last"  # how the shifted plan is filled at the end: "last" or "zero"
    history_padding: str = "repeat"  # before T frames exist: "repeat" the first one, or "none" (shorter)
    seed: int = 0  # env b plans with generator seed + b, re-applied at every reset
    budget: Optional[int] = None  # env steps per episode, when known: plans then end with the episode
    # (shrinking horizon: min(H, planned steps left), so the plan's last predicted state is the one the
    # episode ends in; when the budget is not a multiple of frameskip it is the first state after it)

    def __post_init__(self):
        if self.horizon < 1 or not 1 <= self.execute_steps <= self.horizon:
            raise ValueError(f"need horizon >= 1 and 1 <= execute_steps <= horizon, got {self.horizon}, {self.execute_steps}")
        if self.budget is not None and self.budget < 1:
            raise ValueError(f"budget must be >= 1 env steps or None, got {self.budget}")
        if self.pad not in ("last", "zero") or self.history_padding not in ("repeat", "none"):
            raise ValueError("pad must be 'last'|'zero' and history_padding 'repeat'|'none'")


@dataclass
class ReplanRecord:
    """What one re-plan cost and chose (one entry per re-plan, for B environments)."""

    env_step: int  # env steps executed before this re-plan
    wall_time: float  # seconds for encode + plan + scoring the chosen plan
    plan_time: float  # seconds inside `planner.plan`
    predictor_calls: int  # candidate-steps evaluated (B * N * H summed over objective calls)
    objective_calls: int  # batched objective evaluations
    cost: np.ndarray  # [B] total cost of the chosen plan
    violation: np.ndarray  # [B] predicted constraint violation of the chosen plan
    terms: dict  # {name: [B]} per-term costs of the chosen plan
    positions: Optional[np.ndarray] = None  # [B, H, 2] predicted agent positions, when a readout exists
    history: Optional[np.ndarray] = None  # [I, B] best cost per planner iteration
    flops: Optional[float] = None  # predictor FLOPs, when the model reports `flops_per_step()`


class LatentObjective:
    """Scores candidate actions ``[B, N, H, A_fs]`` by rolling out the world model from a fixed history.

    A world model with ``rolls_out_candidates = True`` gets the candidates ``[B, N, H, A_fs]`` against
    the B histories and shares their work; any other gets the history expanded to ``B * N`` (once
    per candidate count N, reused across iterations). `at_end` tells the costs whether the candidates'
    last predicted state is the episode's last (`CostContext.at_end`; None: unknown).
    """

    def __init__(self, world_model, costs: Callable, z_hist: torch.Tensor, z_goal: torch.Tensor,
                 a_past: Optional[torch.Tensor] = None, prev_action: Optional[torch.Tensor] = None,
                 readout: Optional[Callable] = None, at_end: Optional[bool] = None):
        self.wm, self.costs, self.readout, self.at_end = world_model, costs, readout, at_end
        self.z_hist, self.z_goal, self.a_past, self.prev_action = z_hist, z_goal, a_past, prev_action
        self._expanded: dict[int, tuple] = {}

    def _history(self, N: int) -> tuple:
        if N not in self._expanded:
            B, T = self.z_hist.shape[:2]
            z = self.z_hist[:, None].expand(B, N, *self.z_hist.shape[1:]).reshape(B * N, *self.z_hist.shape[1:])
            a = None
            if self.a_past is not None:  # [B, T-1, A_fs] -> [B*N, T-1, A_fs]
                a = self.a_past[:, None].expand(B, N, *self.a_past.shape[1:]).reshape(B * N, *self.a_past.shape[1:])
            self._expanded[N] = (z, a)
        return self._expanded[N]

    def rollout(self, actions: torch.Tensor) -> torch.Tensor:
        """Predicted latents ``[B, N, H, P, D]`` for candidates ``[B, N, H, A_fs]``."""
        if getattr(self.wm, "rolls_out_candidates", False):
            return self.wm.rollout(self.z_hist, actions, self.a_past)
        B, N, H, A = actions.shape
        z_hist, a_past = self._history(N)
        z_pred = self.wm.rollout(z_hist, actions.reshape(B * N, H, A), a_past)  # [B*N, H, P, D]
        return z_pred.reshape(B, N, H, *z_pred.shape[-2:])

    def context(self, actions: torch.Tensor) -> CostContext:
        return CostContext(actions, self.rollout(actions), self.z_goal, self.prev_action, self.readout,
                           z_now=self.z_hist[:, -1], at_end=self.at_end)

    def __call__(self, actions: torch.Tensor) -> CostOutput:
        return self.costs(self.context(actions))


class MPCController:
    """Receding-horizon control of B environments with a world model, a planner and costs.

    Args:
        world_model: object following the world-model protocol (module docstring).
        planner: any `Planner`.
        costs: a `CostSum` (or any callable `CostContext -> CostOutput`).
        action_low, action_high: ``[A]`` env action bounds; planning uses them tiled frameskip times.
        config: `MPCConfig`.
        readout: ``z_pred [B, N, H, P, D] -> [B, N, H, 2]`` agent position, for guardrails and records.
    """

    def __init__(self, world_model, planner: Planner, costs: Callable, action_low, action_high,
                 config: MPCConfig = MPCConfig(), readout: Optional[Callable] = None):
        self.wm, self.planner, self.costs, self.config, self.readout = world_model, planner, costs, config, readout
        self.fs, self.T = int(getattr(world_model, "frameskip", 1)), int(getattr(world_model, "history", 1))
        self.device = torch.device(getattr(world_model, "device", "cpu"))
        low = torch.as_tensor(np.asarray(action_low, dtype=np.float32)).reshape(-1)
        high = torch.as_tensor(np.asarray(action_high, dtype=np.float32)).reshape(-1)
        A = getattr(world_model, "action_dim", low.shape[0])
        if low.shape != (A,) or high.shape != (A,):
            raise ValueError(f"action bounds must have shape [{A}] (world model action_dim), got {list(low.shape)}")
        self.env_low, self.env_high = low, high
        self.plan_low, self.plan_high = low.repeat(self.fs), high.repeat(self.fs)  # [A_fs]
        self.records: list[ReplanRecord] = []
        self.reset()

    def reset(self) -> None:
        """Forget the episode: history, goal, plan, queued actions, records; re-seed the generator."""
        self.generators: list = []  # one per environment, seeded seed + b (made at the first re-plan)
        self.z_goal: Optional[torch.Tensor] = None
        self._frames: list[torch.Tensor] = []  # latents [B, P, D] at planned-step boundaries
        self._steps: list[torch.Tensor] = []  # executed planned steps [B, A_fs] between frames
        self._queue: Optional[torch.Tensor] = None  # [B, k, A_fs] planned steps still to execute
        self._plan: Optional[PlanResult] = None
        self._queue_length = 0  # planned steps the last plan queued for execution
        self._predicted: Optional[torch.Tensor] = None  # [B, H, P, D] latents the chosen plan predicts
        self._pending: Optional[torch.Tensor] = None  # env actions [B, fs, A] of the current planned step
        self._env_step, self._prev_action = 0, None
        self.records = []

    @torch.no_grad()
    def encode(self, pixels, proprio=None) -> torch.Tensor:
        """Latents ``[B, P, D]`` of a batch of frames (no autograd: they are constants for planning)."""
        pixels = torch.as_tensor(np.ascontiguousarray(pixels), device=self.device)
        if pixels.dtype != torch.uint8 or pixels.ndim != 4 or pixels.shape[-1] != 3:
            raise ValueError(f"pixels must be uint8 [B, H, W, 3], got {pixels.dtype} {list(pixels.shape)}")
        if proprio is not None:
            proprio = torch.as_tensor(np.asarray(proprio, dtype=np.float32), device=self.device)
            if not torch.isfinite(proprio).all():
                raise ValueError("proprio contains NaN or inf")
        z = self.wm.encode(pixels, proprio)
        if not torch.isfinite(z).all():
            raise ValueError("encoded latents contain NaN or inf")
        return z

    def set_goal(self, pixels, proprio=None) -> None:
        """Encode and cache the goal ``[B, H, W, 3]`` (once per episode)."""
        self.z_goal = self.encode(pixels, proprio)

    def act(self, pixels, proprio=None) -> np.ndarray:
        """The next env actions ``[B, A]`` for observations ``[B, H, W, 3]``; re-plans when due."""
        if self.z_goal is None:
            raise ValueError("set_goal() must be called before act()")
        if self._pending is None or self._pending.shape[1] == 0:
            self._start_planned_step(pixels, proprio)
        action, self._pending = self._pending[:, 0], self._pending[:, 1:]
        self._prev_action, self._env_step = action, self._env_step + 1
        return action.cpu().numpy()

    def _start_planned_step(self, pixels, proprio) -> None:
        """At a planned-step boundary: record the frame, re-plan if the queue is empty, pop one step."""
        start = time.perf_counter()
        self._frames = (self._frames + [self.encode(pixels, proprio)])[-self.T :]  # keep the last T frames
        self._steps = self._steps[len(self._steps) - (len(self._frames) - 1) :]  # and the steps between them
        if self._queue is None or self._queue.shape[1] == 0:
            self._replan(start)
        step, self._queue = self._queue[:, 0], self._queue[:, 1:]  # [B, A_fs]
        self._steps.append(step)
        self._pending = step.reshape(step.shape[0], self.fs, -1)  # [B, fs, A]

    def _history(self) -> tuple:
        """``z_hist [B, T', P, D]`` and ``a_past [B, T'-1, A_fs] | None`` from the real frames."""
        frames, steps = list(self._frames), list(self._steps)  # T' frames, T'-1 steps between them
        if self.config.history_padding == "repeat":
            while len(frames) < self.T:
                frames.insert(0, frames[0])
                steps.insert(0, torch.zeros_like(self.plan_low).expand(frames[0].shape[0], -1).to(self.device))
        z_hist = torch.stack(frames, dim=1)
        return z_hist, (torch.stack(steps, dim=1) if steps else None)

    def horizon(self) -> int:
        """Planned steps of the next plan: the configured H, or with a `budget` only those left in it
        (at least one, a partly executed last step counting), so that the plan's last predicted state
        is the state the episode will end in (a last-step energy scores exactly that one)."""
        H = self.config.horizon
        left = self._planned_steps_left()
        return H if left is None else max(1, min(H, left))

    def _planned_steps_left(self) -> Optional[int]:
        """Planned steps until the budget ends (a partly executed last step counting); None without a budget."""
        if self.config.budget is None:
            return None
        return -(-(self.config.budget - self._env_step) // self.fs)  # ceil

    def _replan(self, start: float) -> None:
        cfg = self.config
        z_hist, a_past = self._history()
        B, H = z_hist.shape[0], self.horizon()
        if self.z_goal.shape[0] != B:
            raise ValueError(f"goal batch {self.z_goal.shape[0]} does not match observation batch {B}")
        if len(self.generators) != B:
            self.generators = [torch.Generator(device=self.planner.device).manual_seed(cfg.seed + b) for b in range(B)]
        init = elites = None
        if cfg.warm_start and self._plan is not None:
            done = self._queue_length  # planned steps executed since the previous plan
            init = shift_plan(self._plan.actions, done, cfg.pad)[:, :H]
            elites = None if self._plan.elites is None else shift_plan(self._plan.elites, done, cfg.pad)[:, :, :H]
        left = self._planned_steps_left()
        at_end = None if left is None else H >= left  # the plan's last state is the episode's last
        objective = LatentObjective(self.wm, self.costs, z_hist, self.z_goal, a_past, self._prev_action, self.readout, at_end)
        mode = contextlib.nullcontext() if self.planner.needs_grad else torch.inference_mode()
        with mode:
            result = self.planner.plan(objective, B, H, self.plan_low, self.plan_high, init=init,
                                       generator=self.generators, init_elites=elites)
        self._plan, self._queue = result, result.actions[:, : cfg.execute_steps].detach().clone()
        self._queue_length = self._queue.shape[1]  # min(k, H)
        self.records.append(self._record(objective, result, start))

    def _record(self, objective: LatentObjective, result: PlanResult, start: float) -> ReplanRecord:
        """Score the chosen plan once more (B*H predictor steps, not counted) for its breakdown."""
        with torch.inference_mode():
            chosen = objective.context(result.actions[:, None])  # [B, 1, H, A_fs]
            out = self.costs(chosen)
            positions = chosen.positions()[:, 0].cpu().numpy() if self.readout is not None else None
            self._predicted = chosen.z_pred[:, 0] if chosen.z_pred is not None else None
        first = lambda t: t[:, 0].cpu().numpy()  # [B, 1] -> [B]
        return ReplanRecord(
            env_step=self._env_step, wall_time=time.perf_counter() - start, plan_time=result.wall_time,
            predictor_calls=result.predictor_calls, objective_calls=result.objective_calls,
            cost=first(out.total), violation=first(out.violation), terms={k: first(v) for k, v in out.terms.items()},
            positions=positions, history=result.history.cpu().numpy(),
            flops=flops_per_replan(self.wm, result))

    @property
    def last_plan(self) -> Optional[PlanResult]:
        return self._plan

    def predicted_latent(self) -> Optional[torch.Tensor]:
        """``[B, P, D]``: where the last plan predicts the scene at the end of the planned step now
        being executed (None before the first plan or for a model that predicts no latents)."""
        if self._predicted is None or self._queue is None:
            return None
        return self._predicted[:, self._queue_length - 1 - self._queue.shape[1]]
