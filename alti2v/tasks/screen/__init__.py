"""The screening filter: the task (task.py) and sorting a scraped folder with it (sorting.py)."""
from alti2v.tasks.screen.task import (CLASS_NAMES, LABEL, MOTIF, NO_CLASS_FOLDER, REJECTION_REASONS,
                                      SCREEN, ScreenTask, binary_features, write_folders)
