"""Keras models: uint8 images in, preprocessing inside; a backbone (backbones.py) and a task head (heads.py)."""
from alti2v.models.backbones import BACKBONES, VGGPreprocess, build_backbone, freeze_layers
from alti2v.models.heads import screen_head, tagger_head
