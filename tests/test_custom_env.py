"""The README's custom-env example runs exactly as written (no drift between docs and code)."""

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def custom_env_block() -> str:
    text = README.read_text()
    section = re.search(r"<!-- custom-env: start -->(.*?)<!-- custom-env: end -->", text, re.S)
    assert section, "README lost its custom-env section markers"
    blocks = re.findall(r"```python\n(.*?)```", section.group(1), re.S)
    assert len(blocks) == 1, "the custom-env section should hold exactly one python block"
    return blocks[0]


def test_readme_custom_env_example_runs(capsys):
    torch.set_num_threads(1)
    namespace = {"__name__": "readme_custom_env"}
    exec(compile(custom_env_block(), str(README), "exec"), namespace)  # the block asserts it reaches its goal
    assert "distance to goal" in capsys.readouterr().out
    agent = namespace["agent"]
    assert len(agent.records) == 20 and all(r.predictor_calls == 5 * 100 * 5 for r in agent.records)
