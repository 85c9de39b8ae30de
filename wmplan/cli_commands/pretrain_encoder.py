"""`wmplan pretrain-encoder`: DINO self-distillation of a small ViT on a dataset's frames (offline)."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from wmplan.device import device_argument

NAME = "pretrain-encoder"
HELP = "pretrain a DINO-style ViT encoder on the frames of a collected dataset (re-run the same command to resume)"


def add_arguments(p):
    p.add_argument("--data", required=True, help="dataset directory (from `wmplan collect`)")
    p.add_argument("--out", required=True, help="encoder file to write (e.g. runs/pusht/encoder.pt)")
    p.add_argument("--arch", default="vit-tiny-64", help="ViT preset (vit-tiny-64, vit-small-64, vit-micro-32)")
    p.add_argument("--steps", type=int, default=3000, help="optimizer steps")
    p.add_argument("--batch-size", type=int, default=128, help="frames per step")
    p.add_argument("--max-frames", type=int, default=50_000, help="frames sampled from the dataset")
    p.add_argument("--device", type=device_argument, default="cpu", help="torch device")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="bf16: autocast the forward passes to bfloat16 (faster on CPUs with AVX512-BF16 and on GPUs; "
                        "weights and the written encoder stay fp32)")
    p.add_argument("--seed", type=int, default=0, help="seeds frame sampling, initialisation and augmentation")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides", type=_override_arg,
                   help="override a DinoConfig field, e.g. --set global_scale=0.85,1.0 --set local_crops=0 (repeatable)")
    p.add_argument("--save-every", type=int, default=100, help="steps between writes of the resumable state (OUT.state)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


OWN_FLAGS = ("arch", "steps", "batch_size", "precision")  # DinoConfig fields set by their own flags, not --set


def config_overrides(pairs: list[str]) -> dict:
    """`["lr=1e-3", "global_scale=0.85,1.0"]` -> typed DinoConfig fields (types from the defaults).

    Raises:
        ValueError: a pair is not KEY=VALUE with KEY a DinoConfig field set by no flag of its own, or VALUE does
            not convert to the field's type.
    """
    return dict(parse_override(pair) for pair in pairs)


def parse_override(pair: str) -> tuple:
    """`"lr=1e-3"` -> `("lr", 0.001)`, typed as the DinoConfig default; ValueError naming the field's type."""
    from wmplan.encoders.dino_pretrain import DinoConfig

    defaults = DinoConfig()
    key, sep, text = pair.partition("=")
    if not sep or not hasattr(defaults, key) or key in OWN_FLAGS:
        allowed = sorted(k for k in vars(defaults) if k not in OWN_FLAGS)
        raise ValueError(f"{pair!r}: expected KEY=VALUE with KEY one of {', '.join(allowed)} "
                         "(arch, steps, batch size and precision have their own flags)")
    default = getattr(defaults, key)
    try:
        if isinstance(default, tuple):
            return key, tuple(type(d)(v) for d, v in zip(default, text.split(","), strict=True))
        return key, type(default)(text) if not isinstance(default, bool) else text.lower() in ("1", "true", "yes")
    except ValueError as exc:
        raise ValueError(f"{pair!r}: {key} takes {type(default).__name__} like {default!r} ({exc})") from None


def _override_arg(pair: str) -> tuple:
    """argparse `type` of --set: a bad pair is a usage error (exit 2, `wmplan pretrain-encoder: error: ...`)."""
    try:
        return parse_override(pair)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def sample_frames(dataset, max_frames: int, seed: int):
    """Up to `max_frames` frames drawn uniformly from all episodes: uint8 `[M, H, W, 3]`."""
    import numpy as np

    if max_frames < 1:
        raise ValueError(f"--max-frames must be >= 1, got {max_frames}")
    lengths = dataset.lengths() + 1
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.permutation(int(lengths.sum()))[:max_frames])
    starts = np.concatenate([[0], np.cumsum(lengths)])
    frames = []
    for e in range(len(dataset)):
        local = picks[(picks >= starts[e]) & (picks < starts[e + 1])] - starts[e]
        if len(local):
            frames.append(dataset.episode(e, keys=("pixels",))["pixels"][local])
    return np.concatenate(frames)


def run(args) -> int:
    from wmplan.data import EpisodeDataset
    from wmplan.encoders import save_encoder
    from wmplan.encoders.dino_pretrain import DinoConfig, pretrain_dino

    config = DinoConfig(arch=args.arch, steps=args.steps, batch_size=args.batch_size, precision=args.precision,
                        **dict(args.overrides))
    dataset = EpisodeDataset(args.data)
    frames = sample_frames(dataset, args.max_frames, args.seed)
    state = Path(str(args.out) + ".state")  # resumable training state; re-run the same command to resume
    encoder, log = pretrain_dino(frames, config, seed=args.seed, device=args.device, progress=not args.quiet,
                                 state_path=state, save_every=args.save_every)
    save_encoder(encoder, args.out, extra={"dino_log": log, "dataset": str(args.data), "arch": args.arch,
                                                   "dino_config": dataclasses.asdict(config)})
    state.unlink(missing_ok=True)
    print(json.dumps({"out": str(args.out), "frames": len(frames), "first_loss": log[0]["loss"], "last_loss": log[-1]["loss"]}))
    return 0
