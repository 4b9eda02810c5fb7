"""Keras models: uint8 images in, preprocessing inside; a backbone (backbones.py) and a task head (heads.py)."""
from alti2v.models.backbones import BACKBONES, VGGPreprocess, build_backbone, freeze_layers
from alti2v.models.heads import (caption_original_head, screen_head, show_and_tell_head,
                                 tagger_head)
