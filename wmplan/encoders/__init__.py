"""Frozen DINO-style encoders: a DINOv2-layout ViT, its loaders, self-distillation pretraining and a feature cache."""

from wmplan.encoders.loading import encoder_hash, load_dinov2, load_encoder, save_encoder
from wmplan.encoders.vit import VIT_CONFIGS, ViTConfig, ViTEncoder, pixels_to_tensor

__all__ = [
    "VIT_CONFIGS",
    "ViTConfig",
    "ViTEncoder",
    "encoder_hash",
    "load_dinov2",
    "load_encoder",
    "pixels_to_tensor",
    "save_encoder",
]
