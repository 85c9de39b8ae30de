"""`wmplan pretrain-encoder`: DINO self-distillation of a small ViT on a dataset's frames (offline)."""

from __future__ import annotations

import json

NAME = "pretrain-encoder"
HELP = "pretrain a DINO-style ViT encoder on the frames of a collected dataset"


def add_arguments(p):
    p.add_argument("--data", required=True, help="dataset directory (from `wmplan collect`)")
    p.add_argument("--out", required=True, help="encoder file to write (e.g. runs/pusht/encoder.pt)")
    p.add_argument("--arch", default="vit-tiny-64", help="ViT preset (vit-tiny-64, vit-small-64, vit-micro-32)")
    p.add_argument("--steps", type=int, default=3000, help="optimizer steps")
    p.add_argument("--batch-size", type=int, default=128, help="frames per step")
    p.add_argument("--max-frames", type=int, default=50_000, help="frames sampled from the dataset")
    p.add_argument("--device", default="cpu", help="torch device")
    p.add_argument("--seed", type=int, default=0, help="seeds frame sampling, initialisation and augmentation")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


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

    config = DinoConfig(arch=args.arch, steps=args.steps, batch_size=args.batch_size)
    dataset = EpisodeDataset(args.data)
    frames = sample_frames(dataset, args.max_frames, args.seed)
    encoder, log = pretrain_dino(frames, config, seed=args.seed, device=args.device, progress=not args.quiet)
    save_encoder(encoder, args.out, extra={"dino_log": log, "dataset": str(args.data), "arch": args.arch})
    print(json.dumps({"out": str(args.out), "frames": len(frames), "first_loss": log[0]["loss"], "last_loss": log[-1]["loss"]}))
    return 0
