"""Trajectory datasets: on-disk format, collection, and window slicing.

On disk (HDF5 via h5py, one file per episode so writes are atomic and collection resumable)::

    DIR/meta.json                 env name + kwargs, image size, action/proprio/state dims, policy
    DIR/episodes/ep_000000.h5     one episode:
        pixels   [T+1, S, S, 3] uint8    frames o_0..o_T (gzip, chunked per frame)
        proprio  [T+1, P]       float32
        actions  [T, A]         float32  a_t moves o_t -> o_{t+1}
        states   [T+1, X]       float64  full simulator states (env.get_state())
        attrs: seed, steps, complete=True
"""

from wmplan.data.dataset import DatasetError, EpisodeDataset, episode_path, read_meta, registered_name, write_episode
from wmplan.data.windows import gather_window, window_index

__all__ = ["DatasetError", "EpisodeDataset", "episode_path", "read_meta", "registered_name", "write_episode",
           "gather_window", "window_index"]
