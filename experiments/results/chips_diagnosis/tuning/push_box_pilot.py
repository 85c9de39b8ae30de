"""Pilot: chips bench with the planner's push box narrowed to [-m, m] (a table-edge guardrail)."""
import dataclasses, sys
import gymnasium as gym, numpy as np, torch
sys.path.insert(0, "/work/main")
import wmplan.bench as B
planner, pw, m, out = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
torch.set_num_threads(1)
orig = B.build_agent
def narrowed(spec, wm, planner, action_space, *a, **k):
    box = gym.spaces.Box(-m, m, action_space.shape, np.float32)
    return orig(spec, wm, planner, box, *a, **k)
B.build_agent = narrowed
spec = dataclasses.replace(B.load_spec("chips"), proprio_weight=pw)
s = B.run_bench(spec, planner, out, episodes=12, seed=5000, progress=False, checkpoint=sys.argv[5] if len(sys.argv) > 5 else None)
B.print_summary(s)
