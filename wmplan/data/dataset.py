"""Episode files: atomic writing, validated reading."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np

EPISODE_KEYS = ("pixels", "proprio", "actions", "states")
FORMAT_VERSION = 1


class DatasetError(ValueError):
    """A dataset directory or episode file is missing, corrupt or inconsistent."""


def registered_name(env: str) -> str:
    """The short name datasets record for `env` (a short name or gymnasium id); an unregistered name as given."""
    import envs

    try:
        return envs.entry(env).name
    except envs.EnvInputError:  # not a registered env, e.g. a custom one
        return env


def episode_path(root: Path, index: int) -> Path:
    return Path(root) / "episodes" / f"ep_{index:06d}.h5"


def _atomic_replace(tmp: Path, final: Path) -> None:
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)


def write_meta(root: Path, meta: dict) -> None:
    """Write `meta.json` atomically."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / "meta.json.tmp"
    tmp.write_text(json.dumps({"format_version": FORMAT_VERSION, **meta}, indent=2, sort_keys=True))
    _atomic_replace(tmp, root / "meta.json")


def read_meta(root: Path) -> dict:
    path = Path(root) / "meta.json"
    if not path.is_file():
        raise DatasetError(f"{root} is not a wmplan dataset (no meta.json); create one with `wmplan collect --out {root}`")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DatasetError(f"{path} is corrupt ({err}); delete the dataset and collect it again") from err
    if not isinstance(meta, dict):
        raise DatasetError(f"{path} is corrupt (a JSON {type(meta).__name__}, expected an object); "
                           "delete the dataset and collect it again")
    return meta


def write_episode(path: Path, arrays: dict, attrs: dict) -> None:
    """Write one episode to `path` atomically (temporary file, fsync, rename)."""
    _check_episode_arrays(arrays, str(path))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".h5.tmp")
    with h5py.File(tmp, "w") as f:
        for key in EPISODE_KEYS:
            value = np.asarray(arrays[key])
            if key == "pixels":  # flat-lit frames compress ~10x; chunk per frame for random access
                f.create_dataset(key, data=value, chunks=(1, *value.shape[1:]), compression="gzip", compression_opts=4)
            else:
                f.create_dataset(key, data=value)
        for k, v in attrs.items():
            f.attrs[k] = v
        f.attrs["complete"] = True
    _atomic_replace(tmp, path)


def _check_episode_arrays(arrays: dict, where: str) -> None:
    missing = [k for k in EPISODE_KEYS if k not in arrays]
    if missing:
        raise DatasetError(f"{where}: missing arrays {missing}")
    n = len(arrays["actions"])
    for key in ("pixels", "proprio", "states"):
        if len(arrays[key]) != n + 1:
            raise DatasetError(f"{where}: {key} has {len(arrays[key])} rows, expected {n + 1} (= actions + 1)")
    if arrays["pixels"].ndim != 4 or arrays["pixels"].shape[-1] != 3:
        raise DatasetError(f"{where}: pixels must be [T+1, H, W, 3], got {arrays['pixels'].shape}")


def _check_finite(arrays: dict, where: str) -> None:
    """Refuse NaN or Inf in the float arrays: one bad value turns every loss that sees it into NaN."""
    for key, value in arrays.items():
        if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
            raise DatasetError(f"{where}: {key} contain NaN or Inf; delete the file and re-run `wmplan collect`")


def is_complete(path: Path) -> bool:
    """True when `path` is a readable, fully written episode file."""
    try:
        with h5py.File(path, "r") as f:
            return bool(f.attrs.get("complete", False)) and all(k in f for k in EPISODE_KEYS)
    except (OSError, KeyError):
        return False


class EpisodeDataset:
    """Read-only view of a collected dataset directory.

    Args:
        root: the directory `wmplan collect --out` wrote.
    """

    def __init__(self, root):
        self.root = Path(root)
        if self.root.is_file():
            raise DatasetError(f"{self.root} is a file, expected a dataset directory (from `wmplan collect --out DIR`)")
        if not self.root.is_dir():
            raise DatasetError(f"dataset directory {self.root} does not exist; create it with `wmplan collect --out {self.root}`")
        self.meta = read_meta(self.root)
        self.paths = sorted((self.root / "episodes").glob("ep_*.h5"))
        if not self.paths:
            raise DatasetError(f"{self.root} holds no episodes; run `wmplan collect --out {self.root}`")

    def __len__(self) -> int:
        return len(self.paths)

    def episode(self, i: int, keys=EPISODE_KEYS) -> dict:
        """Episode `i` as a dict of numpy arrays; a clear DatasetError if the file is corrupt."""
        path = self.paths[i]
        try:
            with h5py.File(path, "r") as f:
                if not f.attrs.get("complete", False):
                    raise DatasetError(f"{path} is incomplete")
                arrays = {k: f[k][()] for k in keys}
        except (OSError, KeyError) as err:
            raise DatasetError(
                f"episode file {path} is corrupt or unreadable ({err}); delete it and re-run "
                f"`wmplan collect` with the same arguments to regenerate it"
            ) from err
        if set(keys) == set(EPISODE_KEYS):
            _check_episode_arrays(arrays, str(path))
        _check_finite(arrays, str(path))
        return arrays

    def check_env(self, env: str, expected_by: str = "not") -> None:
        """Raise DatasetError unless the dataset was collected in `env` (a short name or gymnasium id).

        `expected_by` says who wants `env`: the message reads "DIR was collected in 'maze', {expected_by} 'pusht'",
        e.g. with "the checkpoint trained on".
        """
        collected = self.meta.get("env")
        if collected != registered_name(env):
            raise DatasetError(f"{self.root} was collected in {collected!r}, {expected_by} {env!r}; "
                               f"use a dataset collected in {env!r}")

    def lengths(self) -> np.ndarray:
        """Number of actions per episode: int [E]."""
        out = []
        for p in self.paths:
            try:
                with h5py.File(p, "r") as f:
                    out.append(f["actions"].shape[0])
            except (OSError, KeyError) as err:
                raise DatasetError(f"episode file {p} is corrupt ({err}); delete it and re-run `wmplan collect`") from err
        return np.array(out)

    def split(self, val_fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Disjoint (train, val) episode indices, held out by whole episodes."""
        return split_indices(len(self), val_fraction, seed)


def split_indices(n: int, val_fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint sorted (train, val) indices of `n` episodes: `EpisodeDataset.split` of a dataset of `n`."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(val_fraction * n))) if val_fraction > 0 and n > 1 else 0
    return np.sort(order[n_val:]), np.sort(order[:n_val])
