"""Reproduce a shipped checkpoint: collect -> pretrain-encoder -> train [-> route-graph] -> train-decoder, then record how.

    python experiments/train_checkpoint.py --env pusht --device cuda   # or --device cpu
    python experiments/train_checkpoint.py --env pusht --decoder-only  # (re)fit only the video decoder

Every step is a `wmplan` command (printed and recorded); re-running resumes each step. The result is
`experiments/checkpoints/<env>/world_model.pt` with `manifest.json` beside it: the commands, their
wall times, the hardware and the training metrics. Envs whose benchmark has a route energy (maze) also
get `route_graph.pt`, built from the same dataset with the new checkpoint's probe, and every env gets
`decoder.pt`, the pixel decoder that draws imagined frames in benchmark videos (results never use it).
`--decoder-only` fits just the decoder for the checkpoint already there and adds its step to the manifest.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run as a script from a checkout, installed or not

# Per-environment recipe: collection, encoder pretraining and world-model training arguments.
RECIPES = {
    # push-T: the world model works on every 8x8 patch (64 tokens); the encoder's 4x4 pool blinds the
    # goal energy to the block (experiments/results/pusht_oracle_latent_cem-grid8.json)
    "pusht": {"collect": ["--episodes", "1000"], "pretrain": ["--steps", "2000"],
              "train": ["--steps", "12000", "--val-every", "1000", "--pool-grid", "0"]},
    # maze: a third of the 25-step segments steer straight at the goal through the walls (wall contacts
    # at full throttle, what a planner tries), and the loss weights the proprio up (issue 7).
    "maze": {"collect": ["--episodes", "1000", "--env-kwargs", '{"layout": "umaze"}', "--policy-kwargs",
                         '{"noise": 0.3, "random_frac": 0.3, "direct_frac": 0.3, "segment_steps": 25}'],
             "pretrain": ["--steps", "1000"],
             "train": ["--steps", "6000", "--val-every", "1000", "--rollout-steps", "3", "--proprio-loss-weight", "16"],
             "route_graph": ["--nodes", "200"]},
    "chips": {"collect": ["--episodes", "80", "--steps", "20"], "pretrain": ["--steps", "800"],
              "train": ["--steps", "3000", "--val-every", "1000"],
              "decoder": ["--frame-stride", "1"]},  # 80 episodes of 21 frames: every frame trains the decoder
}


def _run(cmd: list[str], log: list) -> None:
    print("+", shlex.join(cmd), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    log.append({"command": shlex.join(["wmplan", *cmd[3:]]), "seconds": round(time.perf_counter() - start, 1)})


def _origin(encoder: str):
    """How a reused encoder was made: the pretraining steps of the manifest beside it, if it has one."""
    manifest = Path(encoder).parent / "manifest.json"
    if not manifest.is_file():
        return None
    old = json.loads(manifest.read_text())
    steps = [s for s in old.get("steps", []) if "pretrain-encoder" in s.get("command", "")]
    origin = old.get("encoder_origin") or {"manifest": str(manifest), "pretrain_steps": steps}
    if "known_issue" in old:  # what was found wrong with the encoder travels with it
        origin = {**origin, "known_issue": old["known_issue"]}
    return origin


def _fit_decoder(wm: list[str], data: Path, out: Path, device: str, log: list, extra: list[str]) -> dict:
    """Fit decoder.pt beside the checkpoint; returns its held-out metrics."""
    from wmplan.checkpoint import load_checkpoint

    _run([*wm, "train-decoder", "--checkpoint", str(out / "world_model.pt"), "--data", str(data),
          "--out", str(out / "decoder.pt"), "--device", device, "--quiet", *extra], log)
    return load_checkpoint(out / "decoder.pt")["metrics"]


def _decoder_only(wm: list[str], data: Path, out: Path, device: str, extra: list[str]) -> int:
    """Fit decoder.pt for the shipped checkpoint and append the step (command, time, hardware) to its manifest."""
    from wmplan.results import hardware

    manifest_path = out / "manifest.json"
    if not (out / "world_model.pt").is_file() or not manifest_path.is_file():
        raise SystemExit(f"{out} has no world_model.pt + manifest.json; run without --decoder-only first")
    if not (data / "meta.json").is_file():
        raise SystemExit(f"no dataset at {data}; pass --data (the one the checkpoint was trained on)")
    log: list = []
    decoder_metrics = _fit_decoder(wm, data, out, device, log, extra)
    manifest = json.loads(manifest_path.read_text())
    manifest["steps"] += [step | {"hardware": hardware() | {"device": device}} for step in log]
    manifest["decoder_metrics"] = decoder_metrics
    manifest_path.write_text(json.dumps(manifest, indent=2, default=str))
    print(json.dumps(log, indent=1))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", required=True, choices=sorted(RECIPES))
    p.add_argument("--device", default="cpu")
    p.add_argument("--data", default=None, help="dataset dir (default data/<env>; collected if missing)")
    p.add_argument("--work", default=None, help="run dir (default runs/train/<env>)")
    p.add_argument("--out", default=None, help="where world_model.pt + manifest.json go (default experiments/checkpoints/<env>)")
    p.add_argument("--train-steps", default=None, help="override the recipe's training steps")
    p.add_argument("--encoder", default=None,
                   help="reuse this frozen encoder (encoder.pt or a world_model.pt) instead of pretraining one")
    p.add_argument("--decoder-only", action="store_true",
                   help="only fit decoder.pt for the checkpoint already in --out, and add the step to its manifest")
    args = p.parse_args(argv)
    recipe = RECIPES[args.env]
    data = Path(args.data or f"data/{args.env}")
    work = Path(args.work or f"runs/train/{args.env}")
    out = Path(args.out or HERE / "checkpoints" / args.env)
    wm = [sys.executable, "-m", "wmplan.cli"]
    log: list = []
    if args.decoder_only:
        return _decoder_only(wm, data, out, args.device, recipe.get("decoder", []))
    if not (data / "meta.json").is_file():
        _run([*wm, "collect", "--env", args.env, "--out", str(data), "--workers", "2", "--quiet", *recipe["collect"]], log)
    encoder = args.encoder or str(work / "encoder.pt")
    encoder_origin = _origin(args.encoder) if args.encoder else None
    if args.encoder is None:
        _run([*wm, "pretrain-encoder", "--data", str(data), "--out", encoder, "--device", args.device,
              "--quiet", *recipe["pretrain"]], log)
    train = recipe["train"] if args.train_steps is None else ["--steps", args.train_steps]
    _run([*wm, "train", "--env", args.env, "--data", str(data), "--encoder", encoder,
          "--out", str(work), "--device", args.device, "--quiet", *train], log)
    out.mkdir(parents=True, exist_ok=True)
    (out / "world_model.pt").write_bytes((work / "world_model.pt").read_bytes())
    if "route_graph" in recipe:
        _run([*wm, "route-graph", "--data", str(data), "--checkpoint", str(out / "world_model.pt"),
              "--out", str(out / "route_graph.pt"), "--device", args.device, "--quiet", *recipe["route_graph"]], log)
    decoder_metrics = _fit_decoder(wm, data, out, args.device, log, recipe.get("decoder", []))
    metrics = {}
    if (work / "metrics.json").is_file():  # the training log (losses, validation, probe R²) beside it
        text = (work / "metrics.json").read_text()
        (out / "train_metrics.json").write_text(text)
        metrics = json.loads(text)
    from wmplan.results import hardware

    reuse = f" --encoder {args.encoder}" if args.encoder else ""
    manifest = {"env": args.env, "steps": log, "encoder": args.encoder or "pretrained by the step above",
                "encoder_origin": encoder_origin, "hardware": hardware() | {"device": args.device},
                "data": {"episodes": len(list((data / "episodes").glob("*.h5")))}, "metrics": metrics,
                "decoder_metrics": decoder_metrics,
                "reproduce": f"python experiments/train_checkpoint.py --env {args.env} --device {args.device}{reuse}"}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
    print(json.dumps({k: manifest[k] for k in ("steps", "hardware")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
