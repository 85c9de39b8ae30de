"""Feature cache: encode every frame of a dataset once with a frozen encoder.

A frozen encoder's features never change, so world-model training reads cached tokens instead of
running the ViT every step. The cache is an HDF5 file next to the dataset,
`DIR/features_<hash16>.h5`, one dataset per episode (`ep_000000: [T+1, N, D_v]`), with the full
encoder hash in its attributes: a cache made by another encoder (or for fewer episodes) is never
used. It is written atomically (temporary file + `os.replace`).

Episodes linked from another dataset (`experiments/planner_data.py` links the source's episodes
beside the agent's) take their tokens from that dataset's valid cache instead of the encoder: a
DAgger round re-encodes only its new episodes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
from pathlib import Path

import h5py
import numpy as np
import torch
from tqdm.auto import tqdm

from wmplan.encoders.loading import encoder_hash
from wmplan.encoders.vit import ViTEncoder

__all__ = ["cache_path", "cache_features", "load_features"]


def cache_path(dataset_root, encoder_or_hash) -> Path:
    """Where the cache of this encoder lives for a dataset."""
    digest = encoder_or_hash if isinstance(encoder_or_hash, str) else encoder_hash(encoder_or_hash)
    return Path(dataset_root) / f"features_{digest[:16]}.h5"


def _is_valid(path: Path, digest: str, n_episodes: int) -> bool:
    try:
        with h5py.File(path, "r") as f:
            return f.attrs.get("encoder_hash") == digest and int(f.attrs.get("n_episodes", -1)) == n_episodes
    except OSError:
        return False


def cache_features(dataset, encoder: ViTEncoder, batch_size: int = 256, device: str = "cpu",
                   dtype: str = "float16", progress: bool = True) -> Path:
    """Encode all frames of `dataset` (an `EpisodeDataset`) unless a valid cache exists.

    Args:
        dataset: the episodes (`len`, `.root`, `.episode(i, keys)`).
        encoder: the frozen encoder.
        batch_size: frames per encoder call.
        device: where to run the encoder.
        dtype: storage dtype of the tokens ("float16" halves the file; "float32" is exact).
        progress: show a tqdm bar.

    Returns:
        The cache file path.
    """
    digest = encoder_hash(encoder)
    path = cache_path(dataset.root, digest)
    if _is_valid(path, digest, len(dataset)):
        return path
    encoder = encoder.to(device).freeze()
    paths = getattr(dataset, "paths", None)  # an EpisodeDataset's files; links among them may reuse tokens
    with _LinkedTokens(digest) as linked:

        def tokens(i: int) -> np.ndarray:  # [T+1, N, D_v]
            reused = linked.tokens(paths[i]) if paths is not None else None
            if reused is not None:
                return reused
            return encode_frames(encoder, dataset.episode(i, keys=("pixels",))["pixels"], batch_size)

        return write_cache(dataset, encoder, tokens, dtype, progress)


class _LinkedTokens:
    """Cached tokens of episode files that are links into another dataset with a valid cache.

    The source's cache holds its episodes by their position in its sorted file list, as
    `EpisodeDataset` orders them; it is trusted exactly as that dataset's own training would trust it.
    """

    def __init__(self, digest: str):
        self.digest, self.sources = digest, {}  # source root -> (open cache, {file name: position}) or None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for source in self.sources.values():
            if source is not None:
                source[0].close()

    def tokens(self, path: Path) -> np.ndarray | None:
        """`[T+1, N, D_v]` for a linked episode file whose source has a valid cache, else None."""
        if not Path(path).is_symlink():
            return None
        target = Path(path).resolve()
        root = target.parent.parent
        if root not in self.sources:
            self.sources[root] = self._open(root)
        if self.sources[root] is None or target.name not in self.sources[root][1]:
            return None
        cache, position = self.sources[root]
        return cache[f"ep_{position[target.name]:06d}"][()].astype(np.float32)

    def _open(self, root: Path):
        names = sorted(p.name for p in (root / "episodes").glob("ep_*.h5"))
        path = cache_path(root, self.digest)
        if not _is_valid(path, self.digest, len(names)):
            return None
        return h5py.File(path, "r"), {name: i for i, name in enumerate(names)}


def write_cache(dataset, encoder: ViTEncoder, tokens, dtype: str = "float16", progress: bool = False) -> Path:
    """Write `encoder`'s cache for `dataset` atomically from `tokens(i)` -> `[T+1, N, D_v]` per episode."""
    digest = encoder_hash(encoder)
    path = cache_path(dataset.root, digest)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with h5py.File(tmp, "w") as f:
            for i in tqdm(range(len(dataset)), desc="encoding frames", unit="ep", disable=not progress):
                f.create_dataset(f"ep_{i:06d}", data=np.asarray(tokens(i)).astype(dtype))
                _release_freed_memory()
            f.attrs["encoder_hash"] = digest
            f.attrs["n_episodes"] = len(dataset)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


@functools.cache
def _malloc_trim():
    """glibc's `malloc_trim`, or None where the C library has none (macOS, musl)."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def _release_freed_memory() -> None:
    """Hand the heap's freed memory back to the OS (glibc; a no-op elsewhere).

    Each episode's tokens (3.3 MB on push-T's 64 tokens) are freed once written, but between torch's
    and h5py's allocations glibc kept them in its heap: encoding 1000 episodes grew the process by
    3 GB, 5000 by 15 GB. Trimming after each episode keeps it flat (`tests/test_feature_cache.py`)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def encode_frames(encoder: ViTEncoder, pixels: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """uint8 `[M, H, W, 3]` -> float32 tokens `[M, N, D_v]`, in batches under inference mode."""
    return encode_in_batches(lambda px: encoder.encode_pixels(px).float().cpu(), pixels, batch_size).numpy()


def encode_in_batches(encode, pixels: np.ndarray, batch_size: int = 256) -> torch.Tensor:
    """`encode(pixels[s : s + batch_size])` for every batch, under inference mode, into one preallocated `[M, ...]`.

    Concatenating the batches would hold the features twice: a probe's dense features of 100,000s of
    frames are gigabytes.
    """
    with torch.inference_mode():
        first = encode(pixels[:batch_size])
        out = first.new_empty((len(pixels), *first.shape[1:]))
        out[: len(first)] = first
        for s in range(batch_size, len(pixels), batch_size):
            out[s : s + batch_size] = encode(pixels[s : s + batch_size])
    return out


def load_features(path, encoder_or_hash, episodes=None) -> list[np.ndarray]:
    """Cached tokens per episode (float32 `[T+1, N, D_v]`), checked against the encoder hash.

    Raises:
        FileNotFoundError: no cache at `path`.
        ValueError: the cache was made by another encoder.
    """
    digest = encoder_or_hash if isinstance(encoder_or_hash, str) else encoder_hash(encoder_or_hash)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no feature cache at {path}; build it with cache_features(dataset, encoder)")
    with h5py.File(path, "r") as f:
        if f.attrs.get("encoder_hash") != digest:
            raise ValueError(f"feature cache {path} is stale: made by another encoder; delete it to re-encode")
        keys = sorted(k for k in f if k.startswith("ep_"))
        ids = range(len(keys)) if episodes is None else episodes
        return [f[f"ep_{i:06d}"][()].astype(np.float32) for i in ids]
