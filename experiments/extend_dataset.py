"""A larger dataset whose held-out episodes include the base dataset's: more data without a leaky comparison.

`wmplan train` holds out episodes by `EpisodeDataset.split` (10%, seed 0), a permutation of the
episode count. Appending episodes to a dataset changes that permutation, so the union's held-out
episodes would include some the base's models trained on, and a comparison of a model trained on
the base with one trained on the union would favour the first. This script links the base's and
the added datasets' episodes (nothing is copied) into a union whose split puts every held-out
episode of the base among the union's held-out episodes, fills the rest of them with added
episodes, and puts every base training episode among the union's training episodes:

    python -m experiments.extend_dataset --base data/pusht_5k --add data/pusht_5k_b --out data/pusht_10k

Models of the base and of the union are then evaluated on the union's held-out episodes, which
neither trained on. Linked episodes reuse the base's feature cache (`wmplan.encoders.features`),
so only the added episodes are encoded.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

import numpy as np

from wmplan.data.dataset import DatasetError, EpisodeDataset, episode_path, split_indices, write_meta

MATCHING_META = ("env", "env_kwargs", "image_size", "action_dim", "proprio_dim", "state_dim")


def union_order(n_base: int, n_added: int, val_fraction: float = 0.1, seed: int = 0) -> np.ndarray:
    """Which episode sits at each index of the union: int [n_base + n_added], base first (0..n_base-1), then added.

    The union's `split(val_fraction, seed)` then holds out every held-out base episode and keeps
    every training base episode for training.
    """
    base_train, base_val = split_indices(n_base, val_fraction, seed)
    union_train, union_val = split_indices(n_base + n_added, val_fraction, seed)
    added = n_base + np.arange(n_added)
    n_added_val = len(union_val) - len(base_val)
    if not 0 <= n_added_val <= n_added:  # only tiny datasets with a large held-out share
        raise DatasetError(f"the union of {n_base} + {n_added} episodes holds out {len(union_val)}, the base "
                           f"{len(base_val)}: the base's split cannot be kept; add more episodes")
    order = np.empty(n_base + n_added, dtype=np.int64)
    order[union_val] = np.concatenate([base_val, added[:n_added_val]])
    order[union_train] = np.concatenate([base_train, added[n_added_val:]])
    return order


def _check_matching(base: EpisodeDataset, added: list[EpisodeDataset]) -> None:
    for ds in added:
        differ = [k for k in MATCHING_META if base.meta.get(k) != ds.meta.get(k)]
        if differ:
            raise DatasetError(f"{ds.root} differs from {base.root} in {', '.join(differ)}; "
                               "only datasets of the same env and shapes can be joined")


def extend_dataset(base, added, out, val_fraction: float = 0.1, seed: int = 0) -> EpisodeDataset:
    """Link `base`'s and `added`'s episodes into `out` in `union_order`; returns the union."""
    base, added, out = EpisodeDataset(base), [EpisodeDataset(a) for a in added], Path(out)
    _check_matching(base, added)
    if out.exists():
        raise DatasetError(f"{out} exists; pass a new --out directory")
    sources = list(base.paths) + [p for ds in added for p in ds.paths]
    order = union_order(len(base), len(sources) - len(base), val_fraction, seed)
    record = {"base": str(base.root.resolve()), "added": [str(ds.root.resolve()) for ds in added],
              "val_fraction": val_fraction, "split_seed": seed}
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")  # built aside, then renamed: no half-made union
    try:
        (tmp / "episodes").mkdir(parents=True)
        for i, j in enumerate(order):
            os.symlink(Path(sources[j]).resolve(), episode_path(tmp, i))
        write_meta(tmp, {k: v for k, v in base.meta.items() if k != "format_version"}
                   | {"episodes": len(sources), "extended": record})
        os.rename(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return EpisodeDataset(out)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True, help="the dataset whose held-out episodes stay held out")
    p.add_argument("--add", required=True, nargs="+", help="datasets whose episodes are added")
    p.add_argument("--out", required=True, help="new dataset directory (links only)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="held-out share, as `wmplan train`'s")
    p.add_argument("--split-seed", type=int, default=0, help="split seed, as `wmplan train --seed`'s")
    args = p.parse_args(argv)
    try:
        union = extend_dataset(args.base, args.add, args.out, args.val_fraction, args.split_seed)
    except (DatasetError, ValueError) as err:
        p.error(str(err))
    print(f"{union.root}: {len(union)} episodes ({union.meta['extended']})")


if __name__ == "__main__":
    main()
