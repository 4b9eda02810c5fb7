"""Benchmark of screen: images/s next to the original's loop and to the model's own inference rate.

  python benchmarks/screen_benchmark.py [--num_images 120] [--image_size 224]

Same model (the screening filter's VGG16 architecture at 224 px; random weights: the
speed does not depend on them), same images (1000x800 JPEGs), on this machine's cores:
  inference  model.predict_on_batch on ready uint8 batches: the ceiling for any screener;
  screen     alti2v.screen --mode move (decode, batch, predict, journaled durable moves);
  original   the original's loop: per file, Pillow decode + pad + resize, one predict call
             per image, then os.system("mv ...").
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def make_model_dir(model_dir: str, image_size: int) -> None:
  """A screening-filter model_dir as training would leave it (untrained weights)."""
  from alti2v import tasks  # pylint: disable=import-outside-toplevel
  from alti2v.training import config as config_lib, run_dir  # pylint: disable=import-outside-toplevel
  os.makedirs(model_dir, exist_ok=True)
  config = config_lib.TrainConfig(task="screen", data_dir="-", model_dir=model_dir,
                                  backbone="vgg16", weights="none", image_size=image_size,
                                  hidden_units=2048, mixed_precision="float32")
  model = tasks.get_task("screen").build_model(config, 1)
  model.save(os.path.join(model_dir, run_dir.MODEL_FILE))
  with open(os.path.join(model_dir, "label.labels.txt"), "w", encoding="utf-8") as f:
    f.write("negative\npositive\n")
  run_dir.write_json(os.path.join(model_dir, run_dir.MODEL_INFO_FILE), {
      "task": "screen", "image_size": image_size, "stored_image_size": 256,
      "vocabulary_file": "label.labels.txt", "num_outputs": 1, "model": run_dir.MODEL_FILE})


def original_loop(model, paths: list[str], out_dir: str, image_size: int) -> float:
  """The original: one image per predict call, then a shell mv per file."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  from PIL import Image  # pylint: disable=import-outside-toplevel
  for folder in ("ok", "ng"):
    os.makedirs(os.path.join(out_dir, folder), exist_ok=True)
  start = time.perf_counter()
  for path in paths:
    image = Image.open(path).convert("RGB")
    side = max(image.size)
    square = Image.new("RGB", (side, side))
    square.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
    x = np.asarray(square.resize((image_size, image_size)), np.uint8)[None]
    score = float(model.predict(x, verbose=0)[0, 0])
    folder = "ok" if score >= 0.5 else "ng"
    os.system(f"mv '{path}' '{os.path.join(out_dir, folder)}/'")
  return time.perf_counter() - start


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--num_images", type=int, default=120)
  parser.add_argument("--image_size", type=int, default=224)
  parser.add_argument("--batch_size", type=int, default=32)
  args = parser.parse_args()
  import keras  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  import build_benchmark  # pylint: disable=import-outside-toplevel
  from alti2v.tasks.screen import sorting  # pylint: disable=import-outside-toplevel
  workdir = tempfile.mkdtemp(prefix="alti2v_screen_bench_")
  try:
    model_dir = os.path.join(workdir, "model")
    make_model_dir(model_dir, args.image_size)
    source = os.path.join(workdir, "source")
    print(f"generating {args.num_images} JPEGs of 1000x800 ...", flush=True)
    paths = build_benchmark.make_scrape(source, args.num_images)
    for p in paths:
      os.unlink(os.path.splitext(p)[0] + ".txt")
    model = keras.models.load_model(os.path.join(model_dir, "model.keras"))

    batch = np.random.default_rng(0).integers(
        0, 255, (args.batch_size, args.image_size, args.image_size, 3), dtype=np.uint8)
    model.predict_on_batch(batch)
    start = time.perf_counter()
    rounds = max(1, args.num_images // args.batch_size)
    for _ in range(rounds):
      model.predict_on_batch(batch)
    inference = rounds * args.batch_size / (time.perf_counter() - start)

    ours_in = os.path.join(workdir, "ours_in")
    shutil.copytree(source, ours_in)
    start = time.perf_counter()
    sorting.screen(model_dir, ours_in, os.path.join(workdir, "ours_out"), mode="move",
                  threshold=0.5, batch_size=args.batch_size)
    ours = args.num_images / (time.perf_counter() - start)

    theirs_in = os.path.join(workdir, "theirs_in")
    shutil.copytree(source, theirs_in)
    theirs_paths = sorted(os.path.join(theirs_in, n) for n in os.listdir(theirs_in))
    original_loop(model, theirs_paths[:3], os.path.join(workdir, "warm"), args.image_size)
    theirs = (len(theirs_paths) - 3) / original_loop(
        model, theirs_paths[3:], os.path.join(workdir, "theirs_out"), args.image_size)
  finally:
    shutil.rmtree(workdir)

  print()
  print(f"{'':<62}{'images/s':>9}  {'vs inference':>12}")
  print(f"{f'inference only: predict_on_batch, batch {args.batch_size}, {args.image_size} px':<62}"
        f"{inference:>9.1f}  {1.0:>11.2f}x")
  print(f"{'alti2v.screen --mode move (everything included)':<62}{ours:>9.1f}  "
        f"{ours / inference:>11.2f}x")
  print(f"{'original: 1 image per predict call + os.system(mv)':<62}{theirs:>9.1f}  "
        f"{theirs / inference:>11.2f}x")
  print(f"\nscreen / original: {ours / theirs:.2f}x; 70,000 images: screen "
        f"{70000 / ours / 3600:.1f} h, original {70000 / theirs / 3600:.1f} h on this machine")


if __name__ == "__main__":
  main()
