"""The Makefile's targets run files that exist (a renamed script must not leave a dead target)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _recipes() -> list[str]:
    return [line.strip() for line in (ROOT / "Makefile").read_text().splitlines() if line.startswith("\t")]


def test_every_script_a_target_runs_exists():
    scripts = [m for line in _recipes() for m in re.findall(r"(?<![\w/])((?:experiments|wmplan)/[\w/]+\.py)", line)]
    modules = [m for line in _recipes() for m in re.findall(r"-m ((?:experiments|wmplan)(?:\.\w+)+)", line)]
    assert scripts and modules, "the Makefile should run at least one script and one module"
    missing = [s for s in scripts if not (ROOT / s).is_file()]
    missing += [m for m in modules if not (ROOT / (m.replace(".", "/") + ".py")).is_file()]
    assert not missing, f"Makefile targets run files that do not exist: {missing}"
