"""Write the EMA teacher of a running pretrain-encoder's state file as an encoder file at chosen steps."""
import sys, time, dataclasses
from pathlib import Path
import torch
from wmplan.encoders import ViTEncoder, save_encoder
from wmplan.encoders.vit import VIT_CONFIGS
from wmplan.encoders.dino_pretrain import DinoConfig

state_path, steps = Path(sys.argv[1]), {int(s) for s in sys.argv[2].split(",")}
seen = set()
while steps - seen:
    time.sleep(20)
    try:
        st = torch.load(state_path, map_location="cpu", weights_only=False)
    except Exception:
        continue
    step = int(st["step"])
    if step in steps and step not in seen:
        cfg = st["signature"]["config"]
        enc = ViTEncoder(dataclasses.replace(VIT_CONFIGS[cfg["arch"]], input_blur=cfg["input_blur"]))
        enc.load_state_dict(st["teacher"])
        out = state_path.with_name(f"enc_step{step}.pt")
        save_encoder(enc.freeze(), out, extra={"dino_log": st["log"], "dino_config": cfg | {"snapshot_step": step}})
        print("wrote", out, flush=True)
        seen.add(step)
