#!/usr/bin/env bash
# The demo command of the README: draws the sample corpus and builds a dataset from it
# with the Beam job, then checks and summarises the dataset. Output: demo_output/.
set -euo pipefail
source "$(dirname "$0")/setup_env.sh"
OUT="$ROOT/demo_output"
mkdir -p "$OUT"
LOG="$OUT/demo.log"
: > "$LOG"
# Runs one step with its stderr (Beam and TensorFlow logs) in demo.log, shown on failure.
step() { "$@" 2>>"$LOG" || { tail -n 40 "$LOG"; echo "demo failed; log: $LOG" >&2; exit 1; }; }

echo "== 1. sample data: 600 illustrations with Safebooru-style tag files"
rm -rf "$OUT/images"
step python -m alti2v.sample_data "$OUT/images" --num_images 600 --seed 0

echo "== 2. Beam job: images + tags -> sharded TFRecords (a tensorflow-datasets dataset)"
step python -m beam_jobs.build_tagged_dataset \
  --input_dir "$OUT/images" --output_dir "$OUT/dataset" --image_size 128 --overwrite
ls "$OUT/dataset"

echo "== 3. recount every shard against dataset_info.json"
step python -m alti2v.dataset "$OUT/dataset"

echo "== 4. one record, read back with tensorflow-datasets"
step python - "$OUT/dataset" <<'PY'
import sys
import tensorflow_datasets as tfds
builder = tfds.builder_from_directory(sys.argv[1])
names = builder.info.features["tags"].feature.names
for ex in tfds.as_numpy(builder.as_dataset(split="train").take(1)):
  print("path :", ex["path"].decode())
  print("image:", ex["image"].shape, ex["image"].dtype)
  print("tags :", [names[i] for i in ex["tags"]])
PY
echo "demo done: dataset in $OUT/dataset"
