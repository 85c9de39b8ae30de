"""experiments/chips_diagnosis.py on a tiny random chips model: what it measures is what it claims."""

import numpy as np
import torch

import envs
from conftest import tiny_world_model
from experiments.chips_diagnosis import _energies, diagnose_task


def test_energies_split_the_visual_and_proprio_parts():
    wm = tiny_world_model(env="chips", action_dim=4, frameskip=1, history=1)
    goal = torch.zeros(1, 4, wm.latent_shape[1])
    z = goal.repeat(3, 1, 1)
    z[1, :, : wm.visual_dim] = 1.0  # visual part off by 1 everywhere
    z[2, :, wm.visual_dim :] = 2.0  # proprio part off by 2 everywhere
    visual, proprio = _energies(wm, z, goal)
    assert np.allclose(visual, [0, 1, 0]) and np.allclose(proprio, [0, 0, 4])


def test_a_task_reports_rank_correlations_of_real_and_predicted_energies():
    wm = tiny_world_model(env="chips", action_dim=4, frameskip=1, history=1)
    env = envs.make("chips")
    row = diagnose_task(env, wm, seed=5000, pushes=4, box=0.8)
    rhos = [v for k, v in row.items() if k.startswith("rho_")]
    assert len(rhos) == 4 and all(-1.0 <= r <= 1.0 for r in rhos)
    assert 0.0 <= row["start_fraction_inside"] <= 1.0 and row["visual_energy_spread"] >= 0.0
    env.close()
