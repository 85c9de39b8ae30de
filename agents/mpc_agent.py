"""`MPCAgent`: a world model + planner + costs acting in any gymnasium env that gives pixels.

>>> agent = MPCAgent(world_model, make_planner("cem"), [GoalEnergy()], action_space=env.action_space)
>>> agent.reset(); action = agent.act(obs, goal)
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import numpy as np

from wmplan.costs import CostSum, CostTerm, GoalEnergy
from wmplan.mpc import MPCConfig, MPCController, ReplanRecord
from wmplan.planners import Planner, make_planner

__all__ = ["MPCAgent"]


def _needs(proprio_dim: int) -> str:
    """What an observation must hold for a world model with `proprio_dim` proprio features."""
    pixels = "pixels ([H, W, 3] uint8, or [B, H, W, 3])"
    if not proprio_dim:
        return pixels
    return f"a dict with {pixels} and proprio ([{proprio_dim}], or [B, {proprio_dim}]; world_model.proprio_dim)"


def _split(obs, what: str, proprio_dim: int) -> tuple:
    """``(pixels, proprio | None)`` from an observation dict or a bare pixel array.

    Args:
        obs: the observation (dict with ``pixels`` and ``proprio``, or bare pixels).
        what: "observation" or "goal", for error messages.
        proprio_dim: proprio features the world model uses (0: none, bare pixels are fine).
    """
    if obs is None:
        raise ValueError(f"the {what} is None: act() needs {'a goal observation' if what == 'goal' else 'one'}, "
                         f"{_needs(proprio_dim)}")
    if isinstance(obs, dict):
        if "pixels" not in obs:
            raise ValueError(f"{what} dict needs a 'pixels' entry, got keys {sorted(obs)}")
        pixels, proprio = np.asarray(obs["pixels"]), obs.get("proprio")
    else:
        pixels, proprio = np.asarray(obs), None
    if proprio is None and proprio_dim:
        raise ValueError(f"the {what} has no proprio, but this world model uses proprio "
                         f"(world_model.proprio_dim = {proprio_dim}): pass {_needs(proprio_dim)}")
    return pixels, (None if proprio is None else np.asarray(proprio))


def _check_readout(costs, readout) -> None:
    """Position guardrails (`KeepOut`, `Workspace`, the route energy) keep ``readout = None`` when they
    read positions through the agent's readout: without one they could only fail at the first plan."""
    if readout is not None:
        return
    blind = [t.name for t in getattr(costs, "terms", []) if hasattr(t, "readout") and t.readout is None]
    if blind:
        raise ValueError(f"cost term(s) {blind} read the agent position from the predicted latents, but no readout "
                         "was given: pass readout= to MPCAgent (e.g. readout=probe_readout(probe)) or to each term")


class MPCAgent:
    """Plans in latent space and returns env actions; one instance drives one env or a batch of B.

    Args:
        world_model: object with `encode`, `rollout`, `frameskip`, `action_dim`, `history`, `device`.
        planner: a `Planner` or a registry name ("cem", "icem", "mppi", "gd", "cem-gd").
        costs: a `CostSum`, a list of cost terms, or None for the goal energy alone.
        config: `MPCConfig` (horizon, executed steps, warm start, seed).
        action_space: a gymnasium Box giving the env action bounds (or pass action_low/high).
        readout: ``z_pred -> [..., 2]`` agent position, needed by position guardrails (`KeepOut`,
            `Workspace`, the route energy) unless each term has its own.

    Raises:
        ValueError: missing action bounds, or position guardrails without a readout.
    """

    def __init__(self, world_model, planner: Union[Planner, str] = "cem",
                 costs: Union[CostSum, Sequence[CostTerm], Callable, None] = None,
                 config: MPCConfig = MPCConfig(), *, action_space=None, action_low=None, action_high=None,
                 readout: Optional[Callable] = None):
        if action_space is not None:
            action_low, action_high = action_space.low, action_space.high
        if action_low is None or action_high is None:
            raise ValueError("MPCAgent needs the env action bounds: pass action_space= or action_low=/action_high=")
        if isinstance(planner, str):
            planner = make_planner(planner, device=str(getattr(world_model, "device", "cpu")))
        if costs is None:
            costs = CostSum([GoalEnergy()])
        elif isinstance(costs, (list, tuple)):
            costs = CostSum(costs)
        _check_readout(costs, readout)
        self.proprio_dim = int(getattr(world_model, "proprio_dim", 0) or 0)  # 0: the model reads pixels only
        self.controller = MPCController(world_model, planner, costs, action_low, action_high, config, readout)
        self._goal_pixels: Optional[np.ndarray] = None
        self._single = True  # whether the last observation was one env's (not a batch)
        self._batch_size: Optional[int] = None  # B of this episode, fixed by its first act()

    def reset(self) -> None:
        """Start a new episode (clears history, cached goal, warm start; re-seeds the planner)."""
        self.controller.reset()
        self._goal_pixels = None
        self._batch_size = None

    def act(self, obs, goal) -> np.ndarray:
        """The next env action for `obs` towards `goal`.

        Args:
            obs, goal: dicts with ``pixels`` (``[H, W, 3]`` uint8 of the model's image size, or
                ``[B, H, W, 3]`` for B envs) and ``proprio`` (``[P]`` or ``[B, P]``) when the world model
                uses it (``world_model.proprio_dim`` > 0); bare pixel arrays when it does not.

        Returns:
            ``[A]`` float32 action (``[B, A]`` for batched observations).

        Raises:
            ValueError: a missing goal or proprio, mismatched shapes, or a batch size other than this
                episode's (call `reset` between episodes).
        """
        pixels, proprio = _split(obs, "observation", self.proprio_dim)
        goal_pixels, goal_proprio = _split(goal, "goal", self.proprio_dim)
        single = self._single = pixels.ndim == 3
        if single:
            pixels, goal_pixels = pixels[None], goal_pixels[None]
            proprio = None if proprio is None else proprio[None]
            goal_proprio = None if goal_proprio is None else goal_proprio[None]
        if pixels.shape != goal_pixels.shape:
            raise ValueError(f"observation pixels {pixels.shape} and goal pixels {goal_pixels.shape} differ in shape")
        self._check_batch_size(pixels.shape[0])
        if self._goal_pixels is None or not np.array_equal(self._goal_pixels, goal_pixels):
            self.controller.set_goal(goal_pixels, goal_proprio)  # encoded once per goal, then cached
            self._goal_pixels = goal_pixels.copy()
        action = self.controller.act(pixels, proprio).astype(np.float32)
        return action[0] if single else action

    def _check_batch_size(self, batch_size: int) -> None:
        """The queued plan holds actions for this episode's B envs: a new B needs a new episode."""
        if self._batch_size is None:
            self._batch_size = batch_size
        elif batch_size != self._batch_size:
            raise ValueError(f"batch size changed from {self._batch_size} to {batch_size}; call agent.reset() first")

    def imagined(self) -> Optional[np.ndarray]:
        """The frame the world model imagines at the end of the planned step being executed (decoded
        from the last plan's predicted latents): ``[H, W, 3]`` uint8 (``[B, H, W, 3]`` batched), or None
        when the world model has no `decoder` (see `wmplan.decoder`) or nothing is planned yet."""
        decoder = getattr(self.controller.wm, "decoder", None)
        z = self.controller.predicted_latent()
        if decoder is None or z is None:
            return None
        frames = decoder.to_uint8(z)
        return frames[0] if self._single else frames

    @property
    def records(self) -> list[ReplanRecord]:
        """One `ReplanRecord` per re-plan of the current episode."""
        return self.controller.records
