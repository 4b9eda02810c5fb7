#!/usr/bin/env bash
# The demo command of the README: sample data → Beam build → dataset check → train the tagger
# (configs/demo.flags) → evaluate → predict a few images; then the screening filter: sorted folders →
# build → train → choose the threshold → screen a scraped folder. ~3 minutes on 2 cores. Output: demo_output/.
set -euo pipefail
source "$(dirname "$0")/setup_env.sh"
OUT="$ROOT/demo_output"
mkdir -p "$OUT"
LOG="$OUT/demo.log"
: > "$LOG"
# Runs one step with its stderr (Beam and TensorFlow logs) in demo.log, shown on failure.
step() { "$@" 2>>"$LOG" || { tail -n 40 "$LOG"; echo "demo failed; log: $LOG" >&2; exit 1; }; }

echo "== 1. sample data: 2000 illustrations with Safebooru-style tag files"
rm -rf "$OUT/images"
step python -m alti2v.sample_data "$OUT/images" --num_images 2000 --seed 0

echo "== 2. Beam job: images + tags -> sharded TFRecords (a tensorflow-datasets dataset)"
# Stored at the training size (64 px): the input pipeline then only decodes and pads.
step python -m beam_jobs.build_tagged_dataset \
  --input_dir "$OUT/images" --output_dir "$OUT/dataset" --image_size 64 --overwrite

echo "== 3. recount every shard against dataset_info.json"
step python -m alti2v.dataset "$OUT/dataset" | tail -n 1

echo "== 4. train the tagger (configs/demo.flags: small CNN, 64 px, CPU)"
step python -m alti2v.train --flagfile configs/demo.flags \
  --data_dir "$OUT/dataset" --model_dir "$OUT/tagger" --overwrite

echo "== 5. evaluate on the test split (thresholds calibrated on validation)"
step python -m alti2v.evaluate --model_dir "$OUT/tagger" --data_dir "$OUT/dataset" --split test

echo "== 6. tag a few images (one of them unreadable)"
printf 'not an image' > "$OUT/unreadable.jpg"
step python -m alti2v.predict --model_dir "$OUT/tagger" --top_k 8 --noprogress \
  "$OUT/images/0000/00000[0-2].*" "$OUT/unreadable.jpg"
echo "(true tags of 000000: $(tr '\n' ' ' < "$OUT/images/0000/000000.txt"))"

echo "== 7. screening filter: hand-sorted positive/ (a red circle) and negative/ folders"
rm -rf "$OUT/sorted" "$OUT/scraped" "$OUT/screened"
step python -m alti2v.sample_data "$OUT/sorted" --layout folders --num_images 800 --seed 1
step python -m beam_jobs.build_folder_dataset \
  --input_dir "$OUT/sorted" --output_dir "$OUT/screen_dataset" --image_size 64 --overwrite \
  | grep -A 30 class_counts | head -n 16
step python -m alti2v.train --flagfile configs/screen_demo.flags \
  --data_dir "$OUT/screen_dataset" --model_dir "$OUT/screen_model" --overwrite | tail -n 1
step python -m alti2v.evaluate --model_dir "$OUT/screen_model" --data_dir "$OUT/screen_dataset"

echo "== 8. screen a scraped folder of 300 images into ok/ and ng/ (copies; the input stays)"
step python -m alti2v.sample_data "$OUT/scraped" --layout flat --num_images 300 --seed 2
step python -m alti2v.screen --model_dir "$OUT/screen_model" --input_dir "$OUT/scraped" \
  --output_dir "$OUT/screened" --mode copy --noprogress
step python - "$OUT/screened/scores.csv" <<'PY'
import csv, os, sys
from alti2v import sample_data
rows = list(csv.DictReader(open(sys.argv[1])))
hits = {"ok": [0, 0], "ng": [0, 0]}
for r in rows:
  index = int(os.path.basename(r["path"]).split("_")[1].split(".")[0])
  truth = sample_data.MOTIF in sample_data.draw_sample(index, 2).tags
  hits[r["decision"]][truth] += 1
print(f"ok/: {sum(hits['ok'])} images, {hits['ok'][1]} of them show a red circle; "
      f"ng/: {sum(hits['ng'])} images, {hits['ng'][1]} of them show one")
PY
echo "demo done: dataset in $OUT/dataset, tagger in $OUT/tagger, filter in $OUT/screen_model,"
echo "           screened folder in $OUT/screened"
