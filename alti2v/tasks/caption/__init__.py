"""The katakana captioners: readings (katakana.py), the character vocabulary (vocabulary.py), the
heads (model.py), batched decoding (decode.py), the two tasks (task.py), sample captions."""
from alti2v.tasks.caption.task import (CAPTION, CAPTION_AR, CAPTION_IDS, CAPTIONERS, CAPTIONS,
                                       CaptionTask, ShowAndTellTask, caption_features,
                                       caption_files)
