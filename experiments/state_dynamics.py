"""How learnable is push-T's dynamics from a dataset, in true state? A ceiling for the world model.

    python -m experiments.state_dynamics --data data/pusht_5k --train-episodes 1000 --out experiments/results/pusht_projection/state_dynamics_1000.json

An MLP on the simulator's state (agent xy, block xy, sin/cos of the block angle, agent velocity) and
one planned step's actions (frameskip env actions) predicts the state a planned step later; it is
rolled out 1, 5 and 10 steps on held-out episodes (the dataset's last `--held-out`, whatever the
number of training episodes, so that runs on more data are compared on the same episodes). If this
MLP, with the block's pose handed to it, predicts the block well from N episodes, the data suffices
and what a latent world model misses is in its representation or its predictor; how its error falls
with N says what more data buys. A benchmark, not a test: it writes JSON, never a README number.

`--save FILE` keeps the fitted MLP (`save_state_model`; `load_state_model` reads it back) for
`experiments/oracle_planning.py --oracle state-model`, which plans with it: a learned model on a
perfect representation. `--ensemble K` fits K MLPs from seeds seed..seed+K-1 and saves them all.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn

from wmplan.checkpoint import CheckpointError, load_checkpoint, save_atomic
from wmplan.data import EpisodeDataset
from wmplan.probe import state_targets
from wmplan.results import write_json

FRAMESKIP = 5
STEPS_AHEAD = (1, 5, 10)
MOVED_MM = 5.0  # a window whose block moves more than this in its first step counts as a push


# the model's state, by the dataset's state names; `errors` reads the block at 2:4 and sin, cos at 4, 5
FEATURES = ("agent_x", "agent_y", "block_x", "block_y", "sin(block_theta)", "cos(block_theta)", "d_agent_x", "d_agent_y")


def windows(episodes: list[tuple[np.ndarray, np.ndarray]], steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every window of `steps` planned steps: `FEATURES` `[W, steps+1, 8]`, actions `[W, steps, 5*A]`."""
    x, a = [], []
    for states, actions in episodes:
        for t in range(len(actions) - FRAMESKIP * steps + 1):
            x.append(states[t : t + FRAMESKIP * steps + 1 : FRAMESKIP])
            a.append(actions[t : t + FRAMESKIP * steps].reshape(steps, -1))
    return torch.tensor(np.array(x), dtype=torch.float32), torch.tensor(np.array(a), dtype=torch.float32)


class StateModel(nn.Module):
    """Residual MLP: state and one step's actions -> the next state, in standardised units."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, action_dim: int, width: int = 512):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        d = len(mean)
        self.net = nn.Sequential(nn.Linear(d + action_dim, width), nn.GELU(), nn.Linear(width, width), nn.GELU(),
                                 nn.Linear(width, width), nn.GELU(), nn.Linear(width, d))

    def forward(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return x + self.net(torch.cat([(x - self.mean) / self.std, a], -1)) * self.std


def save_state_model(members: list[StateModel], path, **info) -> None:
    """Write an ensemble of MLPs (one or more members) as `state_dict`s plus what rebuilds them
    (atomic; loadable with ``weights_only=True``)."""
    first = members[0].net[0]
    save_atomic({"kind": "state_model", "features": list(FEATURES), "frameskip": FRAMESKIP, "width": first.out_features,
                 "action_dim": first.in_features - len(FEATURES), "members": [m.state_dict() for m in members],
                 "info": info}, path)


def load_state_model(path) -> list[StateModel]:
    """The ensemble's members `save_state_model` wrote, in eval mode.

    Raises:
        CheckpointError: the file is another kind of checkpoint, or holds other features or frameskip.
    """
    ckpt = load_checkpoint(path, kind="state_model")
    if tuple(ckpt["features"]) != FEATURES or ckpt["frameskip"] != FRAMESKIP:
        raise CheckpointError(f"{path} models features {ckpt['features']} at frameskip {ckpt['frameskip']}; this "
                              f"code reads {list(FEATURES)} at frameskip {FRAMESKIP}: re-fit it with --save")
    members = []
    for state in ckpt["members"]:
        model = StateModel(torch.zeros(len(FEATURES)), torch.ones(len(FEATURES)), ckpt["action_dim"], ckpt["width"])
        model.load_state_dict(state)
        members.append(model.eval())
    return members


def state_model_info(path) -> dict:
    """What `save_state_model` recorded about the fit (data, training episodes, steps, seed)."""
    return load_checkpoint(path, kind="state_model")["info"]


def fit(x: torch.Tensor, a: torch.Tensor, steps: int, seed: int) -> StateModel:
    torch.manual_seed(seed)
    flat = x.reshape(-1, x.shape[-1])
    model = StateModel(flat.mean(0), flat.std(0) + 1e-6, a.shape[-1])
    opt = torch.optim.AdamW(model.parameters(), 1e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(len(x), (256,), generator=gen)
        loss = (((model(x[idx, 0], a[idx, 0]) - x[idx, 1]) / model.std) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return model


def angle_deg(q: torch.Tensor) -> torch.Tensor:
    return torch.rad2deg(torch.atan2(q[:, 4], q[:, 5]))


def errors(model: StateModel, x: torch.Tensor, a: torch.Tensor) -> dict:
    """Median block position (mm) and angle (deg) errors of open-loop rollouts, beside a block left where it was."""
    out, moved = {}, (x[:, 1, 2:4] - x[:, 0, 2:4]).norm(dim=-1) > MOVED_MM
    with torch.no_grad():
        pred = x[:, 0]
        for k in range(max(STEPS_AHEAD)):
            pred = model(pred, a[:, k])
            if k + 1 not in STEPS_AHEAD:
                continue
            true = x[:, k + 1]
            pos = (pred[:, 2:4] - true[:, 2:4]).norm(dim=-1)
            ang = (angle_deg(pred) - angle_deg(true)).remainder(360)
            out[f"{k + 1}_steps"] = {
                "env_steps": (k + 1) * FRAMESKIP,
                "block_pos_mm_median": round(float(pos.median()), 2),
                "block_angle_deg_median": round(float(torch.minimum(ang, 360 - ang).median()), 2),
                "block_pos_mm_median_pushed_windows": round(float(pos[moved].median()), 2),
                "no_change_baseline_block_pos_mm_median": round(float((x[:, 0, 2:4] - true[:, 2:4]).norm(dim=-1).median()), 2),
            }
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="a push-T dataset (wmplan collect)")
    p.add_argument("--train-episodes", type=int, default=0, help="train on the first N episodes (0: all but the held-out ones)")
    p.add_argument("--held-out", type=int, default=500, help="the dataset's last M episodes are the test set")
    p.add_argument("--test-data", default=None,
                   help="take the held-out episodes (its last --held-out) from this dataset instead, and train on "
                        "--data's first --train-episodes (0: all), e.g. planner data whose source is that dataset")
    p.add_argument("--steps", type=int, default=10_000, help="AdamW steps (batch 256)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--save", default=None, help="also write the fitted MLP here (for oracle_planning --oracle state-model)")
    p.add_argument("--ensemble", type=int, default=1,
                   help="fit this many MLPs (seeds seed, seed+1, ...) and save them all; errors are the first one's")
    args = p.parse_args(argv)
    if args.ensemble < 1:
        p.error(f"--ensemble must be >= 1, got {args.ensemble}")
    start = time.perf_counter()
    ds = EpisodeDataset(args.data)
    test_ds = EpisodeDataset(args.test_data) if args.test_data else ds
    for data in (ds, test_ds):
        if data.meta.get("env") != "pusht":
            p.error(f"{data.root} holds {data.meta.get('env')!r} episodes; this check reads push-T's state layout")
    n_test, room = args.held_out, len(ds) if args.test_data else len(ds) - args.held_out
    n_train = args.train_episodes or room
    if not 0 < n_test < len(test_ds) or not 0 < n_train <= room:
        p.error(f"{len(ds)} episodes cannot give {n_train} training and {n_test} held-out ones")
    names = ds.meta["state_names"]
    load = lambda data, ids: [(state_targets(e["states"], names, FEATURES), e["actions"])
                              for e in (data.episode(i, keys=("states", "actions")) for i in ids)]
    train = windows(load(ds, range(n_train)), 1)
    members = [fit(*train, args.steps, args.seed + k) for k in range(args.ensemble)]
    model = members[0]
    test = load(test_ds, range(len(test_ds) - n_test, len(test_ds)))
    result = {"data": args.data, "test_data": args.test_data or args.data, "train_episodes": n_train,
              "held_out_episodes": n_test, "steps": args.steps, "ensemble": args.ensemble, "frameskip": FRAMESKIP,
              "threads": torch.get_num_threads(),
              "prediction": errors(model, *windows(test, max(STEPS_AHEAD)))}
    result["seconds"] = round(time.perf_counter() - start, 1)
    if args.save:
        save_state_model(members, args.save, data=args.data, train_episodes=n_train, steps=args.steps, seed=args.seed)
        result["saved"] = args.save
    write_json(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
