#!/usr/bin/env bash
# The demo command of the README: all four systems, each figure beside its naive baseline.
# 1-6 the tagger: sample data → Beam build → dataset check and report → train
#   (configs/demo.flags) → evaluate, the run's report, ONNX export → predict a few images →
#   the web page's JSON API (6b); 7-8 the screening filter: sorted folders → build → train →
#   choose the threshold → screen a scraped folder; 9 Vision API distillation: the labelling job
#   against the project's fake Vision server on 127.0.0.1 → build → train a student → evaluate;
# 10 the katakana captioner: COCO-style captions → build → train → evaluate → caption files.
# ~13 CPU-minutes (20 min measured on a busy 2-core machine). Output: demo_output/.
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
  --input_dir "$OUT/images" --output_dir "$OUT/dataset" --image_size 64 --overwrite \
  --tag_categories "$OUT/images/tag_categories.csv"

echo "== 3. recount every shard against dataset_info.json; the dataset as pictures"
step python -m alti2v.dataset "$OUT/dataset" | tail -n 1
step python -m alti2v.report "$OUT/dataset" --noprogress

echo "== 4. train the tagger (configs/demo.flags: small CNN, 64 px, CPU)"
step python -m alti2v.train --flagfile configs/demo.flags \
  --data_dir "$OUT/dataset" --model_dir "$OUT/tagger" --overwrite

echo "== 5. evaluate on the test split (thresholds calibrated on validation); the run as pictures"
step python -m alti2v.evaluate --model_dir "$OUT/tagger" --data_dir "$OUT/dataset" --split test
echo "   (the run's model card, $OUT/tagger/README.md, now has these figures; export to ONNX:)"
step python -m alti2v.export --model_dir "$OUT/tagger" --format onnx
step python -m alti2v.report "$OUT/tagger" --noprogress

echo "== 6. tag a few images (one of them unreadable)"
printf 'not an image' > "$OUT/unreadable.jpg"
step python -m alti2v.predict --model_dir "$OUT/tagger" --top_k 8 --noprogress \
  "$OUT/images/0000/00000[0-2].*" "$OUT/unreadable.jpg"
echo "(true tags of 000000: $(tr '\n' ' ' < "$OUT/images/0000/000000.txt"))"
echo "   caption files for a training set: a copy of three images gets name.txt beside each"
rm -rf "$OUT/to_caption" && mkdir -p "$OUT/to_caption"
cp "$OUT"/images/0000/000003.png "$OUT"/images/0000/00000[45].jpg "$OUT/to_caption/"
step python -m alti2v.predict --model_dir "$OUT/tagger" --noprogress --write_captions \
  --always_first_tags my_style --replace_underscores --output "$OUT/to_caption/tags.jsonl" \
  "$OUT/to_caption"
head -n 3 "$OUT"/to_caption/*.txt

echo "== 6b. the web page's JSON API (python -m alti2v.serve): start, tag one image, stop"
PORT="$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
python -m alti2v.serve --model_dir "$OUT/tagger" --port "$PORT" >>"$LOG" 2>&1 &
SERVE=$!
trap 'kill $SERVE 2>/dev/null' EXIT
# What `curl -F file=@IMAGE 'http://127.0.0.1:PORT/v1/tag?top_k=5'` prints (curl need not be here).
step python - "$PORT" "$OUT"/images/0000/000000.* <<'PY'
import sys, time, httpx
url = f"http://127.0.0.1:{sys.argv[1]}"
image = next(p for p in sys.argv[2:] if not p.endswith(".txt"))
for _ in range(240):  # The server loads the model first (seconds).
  try:
    httpx.get(f"{url}/v1/info", timeout=2).raise_for_status()
    break
  except httpx.HTTPError:
    time.sleep(0.5)
print(httpx.post(f"{url}/v1/tag", params={"top_k": 5}, timeout=60,
                 files={"file": open(image, "rb")}).text)
PY
kill "$SERVE"; wait "$SERVE" 2>/dev/null || true; trap - EXIT
echo "(python -m alti2v.serve --model_dir $OUT/tagger, then open http://127.0.0.1:8000/ to try it)"

echo "== 6c. Illustration2Vec feature vectors: embed the 2000 images, then the nearest of a"
echo "       flipped copy of 000000.jpg shrunk to 0.6x: images of the same content"
step python - "$OUT/images/0000/000000.jpg" "$OUT/near_copy.png" <<'PY'
import sys
from PIL import Image
image = Image.open(sys.argv[1]).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
image.resize((round(image.width * 0.6), round(image.height * 0.6))).save(sys.argv[2])
PY
step python -m alti2v.embed --model_dir "$OUT/tagger" --output "$OUT/vectors" --noprogress \
  "$OUT/images"
step python -m alti2v.similar --index "$OUT/vectors" -k 3 "$OUT/near_copy.png" \
  | tee "$OUT/near_copy.json"
step python - "$OUT/near_copy.json" "$OUT/images/0000/000000.txt" <<'PY'
import json, os, sys
def tags(path):  # The tag file as written (spaces, commas or lines), on one line.
  with open(os.path.splitext(path)[0] + ".txt", encoding="utf-8") as f:
    return " ".join(f.read().split())
print(f"  000000.jpg's tag file: {tags(sys.argv[2])}")
for n in json.loads(open(sys.argv[1]).readline())["neighbours"]:
  print(f"  {os.path.basename(n['path'])} ({n['score']}): {tags(n['path'])}")
PY

echo "== 7. screening filter: hand-sorted positive/ (a red circle) and negative/ folders"
rm -rf "$OUT/sorted" "$OUT/scraped" "$OUT/screened"
step python -m alti2v.sample_data "$OUT/sorted" --layout folders --num_images 2000 --seed 1
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
from alti2v.data import samples
from alti2v.tasks import screen
rows = list(csv.DictReader(open(sys.argv[1])))
hits = {"ok": [0, 0], "ng": [0, 0]}
for r in rows:
  index = int(os.path.basename(r["path"]).split("_")[1].split(".")[0])
  truth = screen.MOTIF in samples.draw_sample(index, 2).tags
  hits[r["decision"]][truth] += 1
print(f"ok/: {sum(hits['ok'])} images, {hits['ok'][1]} of them show a red circle; "
      f"ng/: {sum(hits['ng'])} images, {hits['ng'][1]} of them show one")
PY

echo "== 9. Vision API distillation: label images with the labelling job (against the project's"
echo "      fake Vision server on 127.0.0.1: no key, no network), build, train a student"
rm -rf "$OUT/vision_images" "$OUT/vision_labels" "$OUT/fake_vision.url"
step python -m alti2v.sample_data "$OUT/vision_images" --layout flat --num_images 1500 --seed 5
export VISION_API_KEY="demo-key-for-the-fake-server"
python -m tests.fake_vision_server --url_file "$OUT/fake_vision.url" 2>>"$LOG" &
FAKE_SERVER=$!
trap 'kill $FAKE_SERVER 2>/dev/null' EXIT
for _ in $(seq 100); do [ -s "$OUT/fake_vision.url" ] && break; sleep 0.1; done
[ -s "$OUT/fake_vision.url" ] || { tail -n 40 "$LOG"; echo "the fake Vision server did not start" >&2; exit 1; }
step python -m beam_jobs.vision_labels --input_dir "$OUT/vision_images" \
  --output_dir "$OUT/vision_labels" --endpoint "$(cat "$OUT/fake_vision.url")" | tr -s ' \n' ' '
echo
kill $FAKE_SERVER 2>/dev/null || true; trap - EXIT; unset VISION_API_KEY
echo "(one reply: $OUT/vision_labels/scraped_000000.jpg.json: $(head -c 150 "$OUT/vision_labels/scraped_000000.jpg.json")...)"
step python -m beam_jobs.build_vision_dataset --input_dir "$OUT/vision_images" \
  --labels_dir "$OUT/vision_labels" --output_dir "$OUT/vision_dataset" --image_size 64 \
  --overwrite > /dev/null
step python -m alti2v.train --flagfile configs/distill_demo.flags \
  --data_dir "$OUT/vision_dataset" --model_dir "$OUT/student" --overwrite | tail -n 1
step python -m alti2v.evaluate --model_dir "$OUT/student" --data_dir "$OUT/vision_dataset"

echo "== 10. katakana captioner: images with Japanese captions (COCO format) -> katakana dataset"
rm -rf "$OUT/captions_raw"
step python -m alti2v.sample_data "$OUT/captions_raw" --layout captions --num_images 2000 --seed 3
step python -m beam_jobs.build_caption_dataset --input_dir "$OUT/captions_raw/images" \
  --captions_json "$OUT/captions_raw/captions.json" --output_dir "$OUT/caption_dataset" \
  --image_size 64 --overwrite > /dev/null
step python -m alti2v.train --flagfile configs/caption_demo.flags \
  --data_dir "$OUT/caption_dataset" --model_dir "$OUT/captioner" --overwrite | tail -n 1
step python -m alti2v.evaluate --model_dir "$OUT/captioner" --data_dir "$OUT/caption_dataset" \
  --beam_size 3
step python -m alti2v.caption --model_dir "$OUT/captioner" --beam_size 3 \
  "$OUT/captions_raw/images/00000[0-2].jpg"
echo "(what is drawn: $(python - "$OUT/captions_raw/captions.json" <<'PY'
import json, sys
coco = json.load(open(sys.argv[1], encoding="utf-8"))
first = {}
for a in coco["annotations"]:
  first.setdefault(a["image_id"], a["caption"])
print(" / ".join(first[i] for i in range(3)))
PY
))"
echo "demo done: dataset in $OUT/dataset, tagger in $OUT/tagger, filter in $OUT/screen_model,"
echo "           screened folder in $OUT/screened, student in $OUT/student,"
echo "           captioner in $OUT/captioner"
