"""Checkpoint files: plain dicts of tensors and config values, written atomically.

Every checkpoint wmplan writes is loadable with `torch.load(weights_only=True)`: no pickled modules
or classes, only `state_dict`s, numbers, strings, lists and dicts. Writes go to a temporary file
in the same directory followed by `os.replace`, so a crash never leaves a half-written file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

__all__ = ["CheckpointError", "save_atomic", "load_checkpoint", "check_expected", "omit_later_defaults"]


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, of the wrong kind, or made for another setup."""


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


def save_atomic(obj: dict, path: str | os.PathLike) -> Path:
    """Write `obj` with `torch.save` to `path` atomically (tmp file + `os.replace`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes the file private (0600); give it any new file's mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_checkpoint(path: str | os.PathLike, kind: str | None = None, map_location="cpu") -> dict:
    """Load a checkpoint dict safely (`weights_only=True`), with clear errors.

    Args:
        path: the file.
        kind: if given, the checkpoint's `"kind"` entry must equal it.
        map_location: passed to `torch.load`.

    Raises:
        FileNotFoundError: the file does not exist.
        CheckpointError: the file is not a readable checkpoint, or is of another kind.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory, expected a checkpoint file (e.g. {path / 'world_model.pt'})")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types for corrupt files; report one clear error
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({_first_line(err)}); "
            "it may be truncated or corrupt: delete it and re-create it"
        ) from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, expected a dict checkpoint")
    if kind is not None and obj.get("kind") != kind:
        raise CheckpointError(f"{path} is a {obj.get('kind', 'unknown')!r} checkpoint, expected {kind!r}")
    return obj


def _first_line(err: BaseException, limit: int = 200) -> str:
    """`Type: first line of the message`, cut to `limit` characters; just the type when the message is empty
    (torch reports an empty file with an empty message)."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0][:limit]}" if lines else type(err).__name__


def check_expected(path, found: dict, expected: dict) -> None:
    """Raise CheckpointError naming each mismatch between `found` and the non-None `expected` values."""
    wrong = [f"{k}={found.get(k)!r} (expected {v!r})" for k, v in expected.items() if v is not None and found.get(k) != v]
    if wrong:
        raise CheckpointError(
            f"checkpoint {path} was made for another setup: {', '.join(wrong)}. "
            "Train a world model for this setup with `wmplan train --env ENV --data DIR ...` or pass the matching checkpoint."
        )


def omit_later_defaults(settings: dict, later: dict) -> dict:
    """`settings` without the options in `later` that still hold the default given there.

    Resume signatures and fingerprints pass through this, so options added after a run started
    leave its signature unchanged while they are unset, and the run still resumes.
    """
    return {k: v for k, v in settings.items() if k not in later or v != later[k]}
