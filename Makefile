# The commands the README names. Every target works on a fresh machine with Python >= 3.10.
PYTHON ?= python3
export MUJOCO_GL ?= egl
# CPU build of PyTorch; a bare `torch` would pull a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0

.PHONY: install test demo bench-speed clean

install:
	$(PYTHON) -m pip install -q "$(TORCH_SPEC)"
	$(PYTHON) -m pip install -q -e ".[test]"

test: install
	$(PYTHON) -m pytest

demo: install
	$(PYTHON) -m wmplan.cli demo

bench-speed: install
	$(PYTHON) experiments/bench_env_speed.py

clean:
	rm -rf build *.egg-info .pytest_cache runs
