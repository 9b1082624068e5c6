"""The scenes slot_diffusion trains on: slot_attention's loaders and scene flags, imported (one direction, no copy).

CLEVRTex as released under --data-root, else the generated `flat` (Multi-dSprites-like) or
`textured` (CLEVRTex-like) stand-in with ground-truth instance masks; see slot_attention/data.py.
The VAE and the diffusion decoder read the same images with the same --seed, so a VAE trained by
train_vae.py and a slot_diffusion run (and the slot_attention baseline) see the same val scenes.
"""
from __future__ import annotations

from slot_attention.data import KINDS, SceneData, add_scene_flags, generate_scenes, load_scenes, scenes_from_flags

__all__ = ["KINDS", "SceneData", "add_scene_flags", "generate_scenes", "load_scenes", "scenes_from_flags"]
