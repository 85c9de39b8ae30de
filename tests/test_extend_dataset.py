"""experiments/extend_dataset.py: a union of datasets that keeps the base's held-out episodes held out."""

import h5py
import numpy as np
import pytest

from conftest import random_pusht_dataset
from experiments.extend_dataset import main, union_order
from wmplan.data import EpisodeDataset


def _seeds(ds: EpisodeDataset, ids) -> set:
    out = set()
    for i in ids:
        with h5py.File(ds.paths[i]) as f:
            out.add(int(f.attrs["seed"]))
    return out


@pytest.mark.parametrize("n_base, n_added", [(50, 50), (37, 120), (9, 3), (1, 1), (5000, 5000)])
def test_the_union_holds_out_the_base_held_out_episodes_and_trains_on_the_base_training_ones(n_base, n_added):
    from wmplan.data.dataset import split_indices

    order = union_order(n_base, n_added)
    assert sorted(order) == list(range(n_base + n_added))  # every episode once
    base_train, base_val = split_indices(n_base)
    union_train, union_val = split_indices(n_base + n_added)
    assert set(base_val) <= set(order[union_val]) and set(base_train) <= set(order[union_train])


def test_a_split_the_union_cannot_keep_is_refused():
    from wmplan.data.dataset import DatasetError

    with pytest.raises(DatasetError, match="add more episodes"):
        union_order(1, 1, val_fraction=0.9)  # 1 episode holds out none; 2 hold out 2, more than the 1 added


def test_the_union_links_both_datasets_and_its_split_never_trains_on_base_held_out_episodes(tmp_path):
    random_pusht_dataset(tmp_path / "base", episodes=20, steps=3)
    random_pusht_dataset(tmp_path / "more", episodes=20, steps=3, seed=1000)
    main(["--base", str(tmp_path / "base"), "--add", str(tmp_path / "more"), "--out", str(tmp_path / "union")])
    base, union = EpisodeDataset(tmp_path / "base"), EpisodeDataset(tmp_path / "union")
    assert len(union) == 40 and union.meta["episodes"] == 40
    assert union.meta["extended"]["added"] == [str((tmp_path / "more").resolve())]
    assert all(p.is_symlink() for p in union.paths)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base", "more", "union"]  # nothing left aside

    base_train, base_val = base.split()
    union_train, union_val = union.split()
    assert _seeds(base, base_val) <= _seeds(union, union_val)  # the base's held-out episodes stay held out
    assert not _seeds(base, base_train) & _seeds(union, union_val)  # none of its training episodes is held out
    assert _seeds(union, range(40)) == set(range(20)) | set(range(1000, 1020))
    np.testing.assert_array_equal(union.episode(int(union_val[0]))["pixels"].shape, (4, 32, 32, 3))


def test_mismatched_datasets_and_an_existing_out_get_a_usage_error(tmp_path, capsys):
    random_pusht_dataset(tmp_path / "base", episodes=4, steps=3)
    random_pusht_dataset(tmp_path / "other", episodes=4, steps=3, action_dim=3)
    with pytest.raises(SystemExit):
        main(["--base", str(tmp_path / "base"), "--add", str(tmp_path / "other"), "--out", str(tmp_path / "u")])
    assert "action_dim" in capsys.readouterr().err and not (tmp_path / "u").exists()
    with pytest.raises(SystemExit):
        main(["--base", str(tmp_path / "base"), "--add", str(tmp_path / "base"), "--out", str(tmp_path / "other")])
    assert "exists" in capsys.readouterr().err


def test_an_interrupted_union_leaves_no_directory_behind(tmp_path, monkeypatch):
    import experiments.extend_dataset as extend

    random_pusht_dataset(tmp_path / "base", episodes=4, steps=3)
    random_pusht_dataset(tmp_path / "more", episodes=4, steps=3, seed=1000)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(extend, "write_meta", interrupted)
    with pytest.raises(KeyboardInterrupt):
        extend.extend_dataset(tmp_path / "base", [tmp_path / "more"], tmp_path / "union")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base", "more"]  # a re-run starts clean
