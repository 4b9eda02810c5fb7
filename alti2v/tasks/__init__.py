"""Tasks: what differs between the models alti2v trains, one home each, and the registry.

base.py is the Task interface and the registry; each task lives in its own module or
folder and is registered here, one line each. Shared code (data/, models/, training/,
metrics.py) imports no task, and no task imports another.
"""
from alti2v.tasks.base import (EvalOptions, Task, all_tasks, get_task, register,
                               rejection_reasons, run_evaluation, sample_layouts, train)
from alti2v.tasks import caption, distill, screen, tagger

register(tagger.TAGGER)
register(screen.SCREEN)
register(distill.DISTILL)
register(caption.CAPTION)
register(caption.CAPTION_AR)
