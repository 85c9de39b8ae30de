"""experiments/energy_ranking.py: the rank correlation it reports is what it claims."""

import numpy as np

from experiments.energy_ranking import ranking, spearman


def test_spearman_is_one_for_a_monotone_map_and_minus_one_reversed():
    x = np.random.default_rng(0).uniform(0, 10, 200)
    assert spearman(x, np.exp(x)) == 1.0
    assert spearman(x, -x**3) == -1.0
    assert abs(spearman(x, np.random.default_rng(1).uniform(0, 10, 200))) < 0.2


def test_an_energy_on_the_block_ranks_by_block_distance_and_ignores_the_agent():
    rng = np.random.default_rng(0)
    block, agent = rng.uniform(0, 500, (300, 4)), rng.uniform(0, 500, (300, 2))
    proprio = (agent - agent.mean(0)) / agent.std(0)
    goals = np.arange(20)
    on_block = ranking(block / 100.0, proprio, block, agent, goals, weight=0.0)
    assert on_block["spearman_block"] > 0.99 and abs(on_block["spearman_agent"]) < 0.2
    # the 10 lowest-energy frames are the 10 with the nearest block
    nearest = np.median([np.sort(np.linalg.norm(np.delete(block, g, 0) - block[g], axis=1))[:10].mean() for g in goals])
    assert on_block["nearest_block_distance_mm"] == np.float64(nearest).item()
    on_agent = ranking(np.zeros((300, 1)), proprio, block, agent, goals, weight=1.0)  # proprio only
    assert on_agent["spearman_agent"] > 0.99 and abs(on_agent["spearman_block"]) < 0.2
