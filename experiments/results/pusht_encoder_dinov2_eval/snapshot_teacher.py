"""Write the EMA teacher of a running pretrain-encoder's state file as an encoder file at chosen steps.

    python snapshot_teacher.py enc.pt.state 1000,2000,3000   # polls the state file; writes enc_step{N}.pt beside it
"""
import dataclasses
import sys
import time
from pathlib import Path

from wmplan.checkpoint import CheckpointError, load_checkpoint
from wmplan.encoders import ViTEncoder, save_encoder
from wmplan.encoders.vit import VIT_CONFIGS

state_path, wanted = Path(sys.argv[1]), {int(s) for s in sys.argv[2].split(",")}
while wanted:
    time.sleep(20)
    try:
        state = load_checkpoint(state_path, kind="wmplan-dino-state")
    except (FileNotFoundError, CheckpointError):  # not written yet
        continue
    step, cfg = int(state["step"]), state["signature"]["config"]
    if step in wanted:
        encoder = ViTEncoder(dataclasses.replace(VIT_CONFIGS[cfg["arch"]], input_blur=cfg["input_blur"]))
        encoder.load_state_dict(state["teacher"])
        out = state_path.with_name(f"enc_step{step}.pt")
        save_encoder(encoder.freeze(), out, extra={"dino_log": state["log"], "dino_config": cfg | {"snapshot_step": step}})
        print("wrote", out, flush=True)
        wanted.discard(step)
