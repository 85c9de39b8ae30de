"""Summaries of benchmark records: success with a 95% interval, timings, tables, result files.

Tables in the README and `experiments/RESULTS.md` are generated from these files, never typed.
"""

from __future__ import annotations

import csv
import json
import os
import platform
from pathlib import Path

import numpy as np

__all__ = ["wilson_interval", "summarize", "hardware", "markdown_table", "write_results", "results_markdown", "write_json"]


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a success rate (well-behaved at 0 and n)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def hardware() -> dict:
    """The machine the numbers were measured on."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _mean(records, key):
    vals = [r["metrics"][key] for r in records if key in r["metrics"] and r["metrics"][key] is not None]
    return float(np.mean(vals)) if vals else None


def summarize(records: list[dict], metric_keys=()) -> dict:
    """One row: success rate + interval, task metrics, violations, time and predictor calls per re-plan."""
    n = len(records)
    wins = sum(r["success"] for r in records)
    lo, hi = wilson_interval(wins, n)
    times = np.array([t for r in records for t in r["replan_times"]], dtype=float)
    calls = np.array([c for r in records for c in r["predictor_calls"]], dtype=float)
    keep = [r["keep_out_fraction"] for r in records if r.get("keep_out_fraction") is not None]
    row = {
        "episodes": n, "success": wins / n if n else 0.0, "success_lo": lo, "success_hi": hi,
        "replan_median_s": float(np.median(times)) if len(times) else None,
        "replan_p90_s": float(np.percentile(times, 90)) if len(times) else None,
        "replans": int(len(times)),
        "predictor_calls_per_replan": float(np.mean(calls)) if len(calls) else None,
        "keep_out_fraction": float(np.mean(keep)) if keep else None,
    }
    for key in metric_keys:
        row[key] = _mean(records, key)
    return row


def _fmt(v, spec=".3f"):
    if v is None:
        return "–"
    return format(v, spec) if isinstance(v, float) else str(v)


def markdown_table(rows: list[dict], metric_keys=()) -> str:
    """Markdown table of summary rows (each with env, planner and the `summarize` fields)."""
    head = ["env", "planner", "success (95% CI)", *metric_keys, "in keep-out", "re-plan median / p90 (s)", "pred. calls / re-plan", "episodes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["env"], r["planner"], f"{r['success']:.2f} [{r['success_lo']:.2f}, {r['success_hi']:.2f}]",
                 *[_fmt(r.get(k)) for k in metric_keys], _fmt(r.get("keep_out_fraction")),
                 f"{_fmt(r['replan_median_s'])} / {_fmt(r['replan_p90_s'])}",
                 _fmt(r["predictor_calls_per_replan"], ".0f"), str(r["episodes"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_results(out_dir, summary: dict, records: list[dict]) -> None:
    """`summary.json` (row + config + hardware) and `episodes.csv`, written atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2, sort_keys=True, default=str))
    os.replace(tmp, out / "summary.json")
    fixed = ["index", "seed", "success", "keep_out_fraction", "replans", "replan_mean_s"]
    keys = sorted({k for r in records for k in r["metrics"]} - set(fixed))  # info's own `success` is the column
    tmp = out / "episodes.csv.tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*fixed, *keys])
        for r in records:
            times = r["replan_times"]
            w.writerow([r["index"], r["seed"], int(r["success"]), r.get("keep_out_fraction"), len(times),
                        float(np.mean(times)) if times else None, *[r["metrics"].get(k) for k in keys]])
    os.replace(tmp, out / "episodes.csv")


STALE_MARK = " (old checkpoint)"


def write_json(path, result: dict) -> None:
    """Write an experiment's result as indented JSON (parents made) and print it."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


def stale_mark(env: str, sha1, checkpoints: dict[str, str] | None) -> str:
    """STALE_MARK when a result for `env` was measured with another checkpoint than `checkpoints[env]`
    (or recorded none); "" when it is current or `checkpoints` says nothing about `env`."""
    return STALE_MARK if checkpoints and env in checkpoints and sha1 != checkpoints[env] else ""


def results_markdown(result_dirs, title: str = "Benchmark results", checkpoints: dict[str, str] | None = None) -> str:
    """RESULTS.md body generated from `summary.json` files of `wmplan bench` runs.

    checkpoints: env -> SHA-1 of its current checkpoint; a row measured with another checkpoint (or with
        none recorded) gets STALE_MARK and a note, so a table never passes off old numbers as the current model's.
    """
    groups: dict[str, list] = {}
    for d in sorted(result_dirs):
        s = json.loads((Path(d) / "summary.json").read_text())
        groups.setdefault(s["row"]["env"], []).append(s)
    parts = [f"# {title}", "", "Generated by `python experiments/make_results.py` from `wmplan bench` outputs; do not edit by hand.", ""]
    for env, runs in groups.items():
        keys = runs[0].get("metric_keys", [])
        marks = ["" if s.get("baseline") else stale_mark(env, s.get("checkpoint_sha1"), checkpoints) for s in runs]
        rows = [{**s["row"], "planner": s["row"]["planner"] + mark} for s, mark in zip(runs, marks)]
        parts += [f"## {env}", "", markdown_table(rows, keys), ""]
        if any(marks):
            parts += [f"Rows marked{STALE_MARK} were measured with an earlier {env} checkpoint than the one shipped "
                      "now; re-run them (`experiments/run_benchmarks.sh`) before comparing them with the others.", ""]
        hw = runs[0]["hardware"]
        parts += [f"Hardware: {hw.get('cpu')} ({hw.get('torch_threads')} torch threads){', GPU ' + hw['gpu'] if hw.get('gpu') else ''}; "
                  f"protocol: {runs[0]['protocol']}.", ""]
    return "\n".join(parts)
