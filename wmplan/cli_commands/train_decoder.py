"""`wmplan train-decoder`: fit the optional pixel decoder that turns imagined latents into video frames."""

from __future__ import annotations

import json
import time

from wmplan.device import device_argument

NAME = "train-decoder"
HELP = ("fit a pixel decoder on a world model's frozen latents of a dataset (for videos of imagined rollouts; "
        "planning never uses it)")


def add_arguments(p):
    from wmplan.decoder import DecoderConfig

    d = DecoderConfig()
    p.add_argument("--checkpoint", required=True, help="world_model.pt (from `wmplan train`)")
    p.add_argument("--data", required=True, help="dataset directory (from `wmplan collect`)")
    p.add_argument("--out", default=None, help="decoder file (default: decoder.pt beside the checkpoint, where "
                                               "`wmplan bench` finds it)")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--width", type=int, default=d.width, help="channels of the first upsampling stage")
    p.add_argument("--frame-stride", type=int, default=d.frame_stride, help="every k-th frame trains it")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", type=device_argument, default="cpu")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    from pathlib import Path

    from wmplan.data import EpisodeDataset
    from wmplan.decoder import DecoderConfig, fit_decoder, save_decoder
    from wmplan.world_model import WorldModel

    cfg = DecoderConfig(width=args.width, steps=args.steps, batch_size=args.batch_size,
                        frame_stride=args.frame_stride, seed=args.seed)
    wm = WorldModel.load(args.checkpoint, device=args.device)
    dataset = EpisodeDataset(args.data)
    dataset.check_env(wm.env, "the checkpoint trained on")
    start = time.perf_counter()
    decoder, metrics = fit_decoder(wm, dataset, cfg, device=args.device, progress=not args.quiet)
    metrics["seconds"] = round(time.perf_counter() - start, 1)
    out = Path(args.out) if args.out else Path(args.checkpoint).with_name("decoder.pt")
    save_decoder(out, decoder, wm, cfg, metrics)
    print(f"decoder -> {out}")
    print(json.dumps(metrics))
    return 0
