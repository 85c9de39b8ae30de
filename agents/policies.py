"""Simple policies with the agent interface (`reset()`, `act(obs, goal=None)`), for data collection
and baselines.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

__all__ = ["RandomPolicy", "ZeroPolicy"]


class RandomPolicy:
    """Uniform random actions in a Box, optionally held for `repeat` steps (smoother exploration).

    Args:
        action_space: gymnasium Box.
        seed: seed of the policy's own generator (re-applied at `reset`).
        repeat: number of consecutive steps each sampled action is held.
    """

    def __init__(self, action_space, seed: Optional[int] = 0, repeat: int = 1):
        if repeat < 1:
            raise ValueError(f"repeat must be >= 1, got {repeat}")
        self.low = np.asarray(action_space.low, dtype=np.float32)
        self.high = np.asarray(action_space.high, dtype=np.float32)
        if not (np.isfinite(self.low).all() and np.isfinite(self.high).all()):
            raise ValueError("RandomPolicy needs a bounded action space")
        self.seed, self.repeat = seed, repeat
        self.reset()

    def reset(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        self._held, self._left = None, 0

    def act(self, obs=None, goal=None) -> np.ndarray:
        """A random action ``[A]`` (observation and goal are ignored)."""
        if self._left == 0:
            self._held, self._left = self.rng.uniform(self.low, self.high).astype(np.float32), self.repeat
        self._left -= 1
        return self._held.copy()


class ZeroPolicy:
    """The zero action at every step (clipped into the Box): a floor that uses no model.

    What "zero" does is the env's: push-T and the maze hold the agent's target on it (relative
    targets) or apply no force; chips' zero action is a zero-length push at the table's centre.
    """

    def __init__(self, action_space):
        self.action = np.clip(np.zeros(action_space.shape, np.float32), action_space.low, action_space.high).astype(np.float32)

    def reset(self) -> None:
        pass

    def act(self, obs=None, goal=None) -> np.ndarray:
        """The zero action ``[A]`` (observation and goal are ignored)."""
        return self.action.copy()
