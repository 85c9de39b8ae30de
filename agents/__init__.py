"""Things that act in an env: `MPCAgent` (world model + planner + costs) and simple policies."""

from agents.mpc_agent import MPCAgent
from agents.policies import RandomPolicy, ZeroPolicy

__all__ = ["MPCAgent", "RandomPolicy", "ZeroPolicy"]
