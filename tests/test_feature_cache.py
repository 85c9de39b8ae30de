"""The feature cache's writer: memory stays flat however many episodes it encodes."""

import os
import sys
from pathlib import Path

import pytest
import torch

from tests.test_train import encoder
from wmplan.encoders.features import _malloc_trim, load_features, write_cache


def _rss_gb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30


@pytest.mark.skipif(not sys.platform.startswith("linux") or _malloc_trim() is None, reason="glibc heap behaviour")
def test_writing_a_large_cache_does_not_grow_the_process(tmp_path):
    class Episodes:  # 120 episodes of push-T-sized tokens ([101, 64, 128] float32, 3.3 MB each)
        root = tmp_path

        def __len__(self):
            return 120

    def tokens(i):
        with torch.inference_mode():  # torch's allocations between h5py's are what kept freed tokens in the heap
            return torch.cat([torch.full((50, 64, 128), float(i)) @ torch.eye(128), torch.full((51, 64, 128), float(i))]).numpy()

    before = _rss_gb()
    path = write_cache(Episodes(), encoder(), tokens)
    grown = _rss_gb() - before
    assert grown < 0.1, f"the process grew {grown:.2f} GB writing 0.4 GB of tokens"  # it grew 0.35 GB before the trim
    assert load_features(path, encoder(), [119])[0][0, 0, 0] == 119.0
