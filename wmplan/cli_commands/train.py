"""`wmplan train`: train a world model (predictor on a frozen encoder) on a collected dataset."""

from __future__ import annotations

import json
from dataclasses import replace

from wmplan.device import device_argument

NAME = "train"
HELP = "train a world model on a dataset with a frozen encoder (re-run the same command to resume)"


def add_arguments(p):
    p.add_argument("--env", required=True, help="environment the dataset was collected in (pusht, maze, chips)")
    p.add_argument("--data", required=True, help="dataset directory (from `wmplan collect`)")
    p.add_argument("--encoder", required=True,
                   help="encoder file: from `wmplan pretrain-encoder`, a world_model.pt (its encoder), or a DINOv2 .pth")
    p.add_argument("--pool-grid", type=int, default=None,
                   help="pool the encoder's patch tokens to this grid (0: every patch; default: the encoder's own)")
    p.add_argument("--input-blur", type=float, default=None,
                   help="Gaussian low-pass (sigma, pixels) before the encoder's patch embedding, against aliasing of "
                        "small renders (0: none; default: the encoder's own)")
    p.add_argument("--out", required=True, help="run directory: resumable state, world_model.pt, metrics.json")
    p.add_argument("--device", type=device_argument, default="cpu", help="torch device (cpu, cuda, cuda:1 ...)")
    p.add_argument("--seed", type=int, default=0, help="seeds initialisation, sampling and the probe")
    p.add_argument("--steps", type=int, default=20_000, help="optimizer steps")
    p.add_argument("--batch-size", type=int, default=64, help="windows per step")
    p.add_argument("--lr", type=float, default=3e-4, help="peak learning rate")
    p.add_argument("--predictor", default=None, help="predictor preset (default: the env's, else the default config)")
    p.add_argument("--history", type=int, default=None, help="override the preset's history length")
    p.add_argument("--frameskip", type=int, default=None, help="override the preset's frameskip")
    p.add_argument("--width", type=int, default=None, help="override the preset's transformer width")
    p.add_argument("--depth", type=int, default=None, help="override the preset's number of transformer blocks")
    p.add_argument("--conditioning", choices=["concat", "adaln"], default=None, help="override action conditioning")
    p.add_argument("--token-mlp", type=int, default=None,
                   help="hidden width of a per-token MLP on (latent, actions, position) added to the prediction (0: none)")
    p.add_argument("--rollout-steps", type=int, default=1, help="k-step rollout loss (0: teacher forcing only)")
    p.add_argument("--proprio-loss-weight", type=float, default=1.0,
                   help="loss weight of each proprio feature relative to a visual one (1: plain MSE)")
    p.add_argument("--probe", choices=["linear", "attentive"], default="linear",
                   help="readout fitted at the end: ridge on the flattened tokens, or an attentive probe that also "
                        "reads relations between patches such as push-T's block angle (~5 min more on a CPU)")
    p.add_argument("--readout-loss-weight", type=float, default=0.0,
                   help="fit the probe first, freeze it, and train the predictor so that its predictions read as "
                        "their targets do, with this weight (0: off)")
    p.add_argument("--init", default=None,
                   help="world_model.pt whose predictor to start from (fine-tuning; same predictor shape needed)")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="bf16: autocast the training passes to bfloat16 (1.3-1.6x faster on CPUs with AVX512-BF16 "
                        "and on GPUs; weights and checkpoints stay fp32)")
    p.add_argument("--val-every", type=int, default=500, help="steps between validations and checkpoints")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def predictor_config(args):
    from wmplan.data import registered_name
    from wmplan.predictor import PREDICTOR_CONFIGS, PredictorConfig

    env = registered_name(args.env)
    name = args.predictor or (env if env in PREDICTOR_CONFIGS else None)
    if name is not None and name not in PREDICTOR_CONFIGS:
        raise ValueError(f"unknown predictor preset {name!r}; known: {sorted(PREDICTOR_CONFIGS)}")
    cfg = PREDICTOR_CONFIGS[name] if name else PredictorConfig()
    overrides = {"history": args.history, "frameskip": args.frameskip, "conditioning": args.conditioning,
                 "width": args.width, "depth": args.depth, "token_mlp": args.token_mlp}
    return replace(cfg, **{k: v for k, v in overrides.items() if v is not None})


def run(args) -> int:
    from wmplan.data import EpisodeDataset, registered_name
    from wmplan.encoders import load_encoder
    from wmplan.probe import ATTENTIVE_PROBE, ProbeConfig
    from wmplan.train import TrainConfig, train_world_model
    from wmplan.world_model import WorldModel

    env = registered_name(args.env)  # "wmplan/Maze-v0" trains and is recorded as "maze", as collect and bench take it
    dataset = EpisodeDataset(args.data)
    dataset.check_env(env)
    encoder = load_encoder(args.encoder, device=args.device, pool_grid=args.pool_grid, input_blur=args.input_blur)
    config = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, rollout_steps=args.rollout_steps,
                         proprio_weight=args.proprio_loss_weight,
                         probe=ATTENTIVE_PROBE if args.probe == "attentive" else ProbeConfig(),
                         readout_weight=args.readout_loss_weight, precision=args.precision,
                         val_every=args.val_every, ckpt_every=args.val_every, warmup_steps=min(200, args.steps // 10 + 1))
    init = WorldModel.load(args.init).predictor.state_dict() if args.init else None
    metrics = train_world_model(dataset, encoder, args.out, env, predictor_config(args), config, seed=args.seed,
                                device=args.device, progress=not args.quiet, init=init)
    summary = {k: metrics[k] for k in ("final", "probe_r2", "predictor_params", "flops_per_step", "tokens_per_frame")}
    print(json.dumps({"out": str(args.out), **summary}, indent=2))
    return 0
