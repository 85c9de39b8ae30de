"""Slicing training windows from episodes, with history and frameskip.

A window of `n_frames` kept frames starting at env step t takes frames t, t+fs, ..., t+(n-1)fs and
the actions between consecutive kept frames concatenated: actions [n-1, fs*A]
(DINO-WM's frameskip convention: one predicted step = fs env steps).
"""

from __future__ import annotations

import numpy as np


def window_index(lengths, n_frames: int, frameskip: int, stride: int = 1) -> np.ndarray:
    """All (episode, start) pairs whose window fits in its episode: int [W, 2].

    Args:
        lengths: number of actions per episode, [E].
        n_frames: kept frames per window (history + predicted steps), >= 1.
        frameskip: env steps between kept frames, >= 1.
        stride: step between consecutive window starts.
    """
    if n_frames < 1 or frameskip < 1 or stride < 1:
        raise ValueError(f"n_frames, frameskip and stride must be >= 1, got {n_frames}, {frameskip}, {stride}")
    span = (n_frames - 1) * frameskip  # env steps covered by the window
    rows = [(e, t) for e, n in enumerate(lengths) for t in range(0, int(n) - span + 1, stride)]
    return np.array(rows, dtype=np.int64).reshape(-1, 2)


def gather_window(episode: dict, start: int, n_frames: int, frameskip: int, frame_keys=("pixels", "proprio")) -> dict:
    """One window from an episode dict (as `EpisodeDataset.episode` returns).

    Returns frame arrays [n_frames, ...] for each of `frame_keys` (and "states" if present) and
    "actions" [n_frames - 1, frameskip * A].
    """
    idx = start + frameskip * np.arange(n_frames)
    if idx[-1] > len(episode["actions"]):
        raise ValueError(f"window start {start} with {n_frames} frames x frameskip {frameskip} runs past the episode")
    out = {k: episode[k][idx] for k in (*frame_keys, "states") if k in episode}
    acts = episode["actions"][start : start + (n_frames - 1) * frameskip]  # [(n-1)*fs, A]
    out["actions"] = acts.reshape(n_frames - 1, frameskip * acts.shape[-1])  # [n-1, fs*A]
    return out
