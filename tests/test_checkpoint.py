"""Checkpoint loading: every bad path or file ends in one clear CheckpointError or FileNotFoundError."""

import pytest
import torch

from wmplan.checkpoint import CheckpointError, load_checkpoint


def test_empty_file_is_reported_though_torch_gives_no_message(tmp_path):
    empty = tmp_path / "e.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"e.pt is not a readable checkpoint \(EOFError\).*delete it"):
        load_checkpoint(empty)


def test_any_load_error_message_is_reported_on_one_line(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    path.write_bytes(b"x")
    for message, shown in [("", "(RuntimeError)"), ("\n\n", "(RuntimeError)"), ("bad magic\nmore", "(RuntimeError: bad magic)")]:
        def fail(*args, message=message, **kwargs):
            raise RuntimeError(message)

        monkeypatch.setattr(torch, "load", fail)
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(path)
        assert shown in str(err.value) and "\n" not in str(err.value)


def test_directory_and_missing_paths_say_what_is_wrong(tmp_path):
    with pytest.raises(CheckpointError, match="is a directory, expected a checkpoint file"):
        load_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
