# The commands the README names. Every target works on a fresh machine with Python >= 3.10.
PYTHON ?= python3
export MUJOCO_GL ?= egl
# CPU build of PyTorch; a bare `torch` would pull a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0

.PHONY: install test demo bench-speed bench-envs clean

install:
	$(PYTHON) -m pip install -q "$(TORCH_SPEC)"
	$(PYTHON) -m pip install -q -e ".[test]"

test: install
	$(PYTHON) -m pytest

demo: install
	$(PYTHON) -m wmplan.cli demo

# Time per re-plan of every planner on the shipped push-T world model (issue 6's speed table).
bench-speed: install
	$(PYTHON) experiments/bench_planner_speed.py --env pusht --threads 2 --replans 20

# Env throughput and scripted-expert quality of the three environments.
bench-envs: install
	$(PYTHON) experiments/bench_pusht.py
	$(PYTHON) -m experiments.bench_maze
	OMP_NUM_THREADS=1 $(PYTHON) -m experiments.bench_chips

clean:
	rm -rf build *.egg-info .pytest_cache runs
