"""Keras models: uint8 images in, preprocessing inside; a backbone (backbones.py) and head pieces (heads.py)."""
from alti2v.models.backbones import (BACKBONES, VGGPreprocess, WeightsDownloadError,
                                     build_backbone, build_model, freeze_layers)
from alti2v.models.heads import dense_head
