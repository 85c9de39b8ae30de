"""Generate experiments/RESULTS.md (and the README's results section) from benchmark outputs.

    python experiments/make_results.py            # reads experiments/results/bench/*/summary.json

Never type a result into a doc by hand: re-run this after `wmplan bench --out experiments/results/bench/<env>-<planner>`.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from wmplan.results import results_markdown

HERE = Path(__file__).resolve().parent
START, END = "<!-- results:start -->", "<!-- results:end -->"


def env_tables(results_dir: Path) -> str:
    """Markdown sections for the env-level measurements (expert success, throughput)."""
    parts = []
    for path in sorted(results_dir.glob("*_env.json")):
        data = json.loads(path.read_text())
        parts += [f"### {path.stem}", "", "```json", json.dumps(data, indent=1, sort_keys=True)[:4000], "```", ""]
    return "\n".join(parts)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", default=str(HERE / "results"), help="results directory")
    p.add_argument("--readme", default=str(HERE.parent / "README.md"), help="README to update between markers")
    args = p.parse_args(argv)
    results = Path(args.results)
    dirs = sorted(d for d in (results / "bench").glob("*") if (d / "summary.json").is_file())
    body = results_markdown(dirs, title="wmplan benchmark results") if dirs else "# wmplan benchmark results\n\nNo benchmark has been run yet.\n"
    envs = env_tables(results)
    conditions = ("Benchmarks run by `experiments/run_benchmarks.sh` ran two at a time, one torch thread each, on the "
                  "2-core machine; `experiments/results/<env>_planner_speed.json` holds re-plan timings measured alone.\n")
    text = body + "\n" + conditions + ("\n## Environment measurements\n\n" + envs if envs else "")
    (HERE / "RESULTS.md").write_text(text)
    readme = Path(args.readme)
    if readme.is_file() and START in readme.read_text():
        section = "\n".join(body.splitlines()[3:])  # drop the title and the generated-by line
        new = re.sub(f"{re.escape(START)}.*?{re.escape(END)}", f"{START}\n{section}\n{END}", readme.read_text(), flags=re.S)
        readme.write_text(new)
    print(f"wrote {HERE / 'RESULTS.md'} from {len(dirs)} benchmark runs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
