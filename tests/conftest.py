import os

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np
import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def tiny_world_model(env="pusht", image_size=64, action_dim=2, proprio_dim=4, frameskip=5, history=2, seed=0,
                     probe_names=("agent_x", "agent_y")):
    """A tiny random world model (random ViT, random predictor, probe) standing in for a trained one."""
    from wmplan.encoders import ViTConfig, ViTEncoder
    from wmplan.predictor import Predictor, PredictorConfig
    from wmplan.probe import Probe
    from wmplan.world_model import WorldModel

    enc = ViTEncoder(ViTConfig(image_size=image_size, patch_size=16, embed_dim=16, depth=1, num_heads=2, pool_grid=2), seed=seed)
    cfg = PredictorConfig(history=history, frameskip=frameskip, width=16, depth=1, num_heads=2)
    pred = Predictor(cfg, num_tokens=4, latent_dim=16 + proprio_dim, action_dim=action_dim, proprio_dim=proprio_dim, seed=seed)
    probe = Probe(4, 16 + proprio_dim, list(probe_names), seed=seed)
    mean, std = np.full(proprio_dim, 256.0), np.full(proprio_dim, 100.0)
    return WorldModel(enc, pred, env, image_size, action_dim, mean, std, probe=probe).eval()


def random_pusht_dataset(path, episodes: int, steps: int, action_dim: int = 2, proprio_dim: int = 3, seed: int = 0) -> None:
    """A push-T-shaped dataset of random 32x32 frames, proprio, actions and states (agent xy, block xy, angle)."""
    from wmplan.data.dataset import episode_path, write_episode, write_meta

    write_meta(path, {"env": "pusht", "env_kwargs": {}, "image_size": 32, "action_dim": action_dim,
                      "proprio_dim": proprio_dim, "state_dim": 5,
                      "state_names": ["agent_x", "agent_y", "block_x", "block_y", "block_theta"]})
    rng = np.random.default_rng(seed)
    for e in range(episodes):
        arrays = {"pixels": rng.integers(0, 256, (steps + 1, 32, 32, 3), dtype=np.uint8),
                  "proprio": rng.normal(size=(steps + 1, proprio_dim)).astype(np.float32),
                  "actions": rng.uniform(-1, 1, (steps, action_dim)).astype(np.float32),
                  "states": rng.uniform(0, 500, (steps + 1, 5))}
        write_episode(episode_path(path, e), arrays, {"seed": seed + e, "steps": steps})


@pytest.fixture(scope="session")
def tiny_pusht_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "world_model.pt"
    tiny_world_model().save(path)
    return path
