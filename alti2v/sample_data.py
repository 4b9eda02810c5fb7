"""Command line: draws a deterministic sample corpus in one of the layouts the builders read.

  python -m alti2v.sample_data OUT_DIR --num_images 600 --seed 0 [--layout NAME]

Each image shows 1-3 coloured shapes on a patterned background (alti2v/data/samples.py); each
task writes its labels in its own layout (Task.sample_layouts), e.g. safebooru: `N.jpg` beside
`N.txt` with tags that say what is drawn. The same seed gives the same files.
"""
from absl import app, flags

from alti2v import tasks

LAYOUTS = tasks.sample_layouts()
FLAGS = flags.FLAGS
flags.DEFINE_integer("num_images", 600, "How many images to draw.")
flags.DEFINE_integer("seed", 0, "Random seed; the same seed gives the same corpus.")
flags.DEFINE_enum("layout", "safebooru", list(LAYOUTS),
                  "; ".join(f"{layout.name}: {layout.help}" for layout in LAYOUTS.values())
                  + ".")


def main(argv):
  if len(argv) != 2:
    raise app.UsageError("usage: python -m alti2v.sample_data OUT_DIR [--num_images N] "
                         f"[--seed S] [--layout {'|'.join(LAYOUTS)}]")
  print(LAYOUTS[FLAGS.layout].write(argv[1], FLAGS.num_images, FLAGS.seed))


if __name__ == "__main__":
  app.run(main)
