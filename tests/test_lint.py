"""The source tree has no names used before they exist, unused imports or dead locals (pyflakes).

A name that a refactor left behind (a `replace` moved without its import) fails only on the path
that calls it, which may be a benchmark the tests never run; pyflakes finds it without running it.
"""

from pathlib import Path

from pyflakes.api import checkPath
from pyflakes.reporter import Reporter

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("wmplan", "envs", "agents", "experiments", "tests")


class _Collect(Reporter):
    def __init__(self):
        self.messages = []

    def unexpectedError(self, filename, msg):
        self.messages.append(f"{filename}: {msg}")

    def syntaxError(self, filename, msg, lineno, offset, text):
        self.messages.append(f"{filename}:{lineno}: {msg}")

    def flake(self, message):
        self.messages.append(str(message))


def test_pyflakes_finds_nothing_in_the_source_tree():
    reporter = _Collect()
    files = sorted(f for package in PACKAGES for f in (ROOT / package).rglob("*.py"))
    assert len(files) > 50
    for path in files:
        checkPath(str(path), reporter)
    assert not reporter.messages, "\n".join(reporter.messages)


def test_the_check_reports_an_undefined_name(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f(config):\n    return replace(config, x=0)\n")
    reporter = _Collect()
    checkPath(str(bad), reporter)
    assert len(reporter.messages) == 1 and "undefined name 'replace'" in reporter.messages[0]
