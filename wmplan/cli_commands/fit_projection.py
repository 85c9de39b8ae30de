"""`wmplan fit-projection`: freeze a PCA projection of an encoder's patch tokens into a new encoder file."""

from __future__ import annotations

import json
import time

from wmplan.device import device_argument

NAME = "fit-projection"
HELP = ("project an encoder's (pooled) patch tokens onto their top principal components on a dataset's training "
        "frames, and write the projected encoder (for `wmplan train --encoder`)")


def add_arguments(p):
    p.add_argument("--encoder", required=True,
                   help="encoder file: from `wmplan pretrain-encoder`, a world_model.pt (its encoder), or a DINOv2 .pth")
    p.add_argument("--data", required=True, help="dataset directory (from `wmplan collect`)")
    p.add_argument("--out", required=True, help="the projected encoder file to write")
    p.add_argument("--dim", type=int, default=64, help="features of the projected token (principal components kept)")
    p.add_argument("--pool-grid", type=int, default=None,
                   help="pool the patch tokens to this grid before projecting (0: every patch; default: the encoder's)")
    p.add_argument("--input-blur", type=float, default=None,
                   help="Gaussian low-pass (sigma, pixels) before the patch embedding (default: the encoder's)")
    p.add_argument("--whiten", action="store_true",
                   help="scale each component to unit variance (the goal energy becomes a Mahalanobis distance)")
    p.add_argument("--max-frames", type=int, default=20_000, help="frames of the training split the fit uses, at most")
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="episodes held out of the fit; keep it and --seed equal to `wmplan train`'s so that "
                        "its validation episodes stay unseen")
    p.add_argument("--seed", type=int, default=0, help="the split's seed (as `wmplan train --seed`) and the fit's")
    p.add_argument("--device", type=device_argument, default="cpu")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    from wmplan.data import EpisodeDataset
    from wmplan.encoders import load_encoder
    from wmplan.encoders.loading import save_encoder
    from wmplan.encoders.projection import fit_projection, project_cache

    start = time.perf_counter()
    dataset = EpisodeDataset(args.data)
    encoder = load_encoder(args.encoder, device=args.device, pool_grid=args.pool_grid, input_blur=args.input_blur)
    train_ids, _ = dataset.split(args.val_fraction, args.seed)
    projected, info = fit_projection(encoder, dataset, args.dim, train_ids, args.max_frames, args.seed,
                                     args.device, progress=not args.quiet, whiten=args.whiten)
    project_cache(dataset, encoder, projected)  # `wmplan train` on this dataset then needs no re-encoding
    info |= {"data": str(args.data), "source": str(args.encoder), "seconds": round(time.perf_counter() - start, 1)}
    save_encoder(projected, args.out, extra={"projection": info})
    print(f"projected encoder -> {args.out}")
    print(json.dumps(info))
    return 0
