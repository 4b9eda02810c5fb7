"""The katakana captioner: conversion, vocabulary, builder, both decoders, decoding, metrics."""
import json
import os
import re

import numpy as np
import pytest
import tensorflow_datasets as tfds

from alti2v import metrics
from alti2v import tasks
from alti2v.data import dataset as dataset_lib
from alti2v.data import samples
from alti2v.tasks import caption
from alti2v.tasks.caption import decode
from alti2v.tasks.caption import katakana
from alti2v.tasks.caption import sample_captions
from alti2v.tasks.caption import vocabulary as captions
from alti2v.training import run_dir
from beam_jobs import build_caption_dataset
from tests.conftest import tiny_config

# Hand-checked: kanji, hiragana, katakana, ASCII digits, full/half width, counters in context.
CONVERSIONS = [
    ("赤い丸と青い四角", "アカイ マル ト アオイ シカク"),
    ("あかい まる と あおい しかく", "アカイ マル ト アオイ シカク"),
    ("2人の男性が月を見ている", "フタリ ノ ダンセイ ガ ツキ ヲ ミ テ イル"),
    ("一匹の猫が床に入った", "イッピキ ノ ネコ ガ ユカ ニ ハイッタ"),
    ("3本のバナナ", "サンボン ノ バナナ"),
    ("ﾃｰﾌﾞﾙの上にピザが１枚ある。", "テーブル ノ ウエ ニ ピザ ガ イチマイ アル"),
    ("二つの図形がある", "フタツ ノ ズケイ ガ アル"),
    ("縞模様の背景に黄色い三角", "シマ モヨウ ノ ハイケイ ニ キイロイ サンカク"),
    ("十匹の犬", "ジュッピキ ノ イヌ"),
    ("8個のりんご", "ハッコ ノ リンゴ"),
    ("ネコが２ひき", "ネコ ガ ニヒキ"),
    ("一人の女の子", "ヒトリ ノ オンナノコ"),
]


@pytest.mark.parametrize("text, expected", CONVERSIONS)
def test_japanese_to_katakana(text, expected):
  assert katakana.to_katakana(text) == expected


@pytest.mark.parametrize("n, counter, reading", [
    (1, "人", "ヒトリ"), (2, "人", "フタリ"), (3, "人", "サンニン"), (4, "人", "ヨニン"),
    (14, "人", "ジュウヨニン"), (1, "匹", "イッピキ"), (3, "匹", "サンビキ"),
    (6, "匹", "ロッピキ"), (4, "匹", "ヨンヒキ"), (3, "本", "サンボン"), (11, "本", "ジュウイッポン"),
    (20, "本", "ニジュッポン"), (5, "枚", "ゴマイ"), (1, "個", "イッコ"), (7, "unknown", None)])
def test_counter_rules(n, counter, reading):
  assert katakana.read_counted(n, counter) == reading


def test_numbers():
  assert [katakana.read_number(n) for n in (0, 10, 21, 300, 1986)] == [
      "ゼロ", "ジュウ", "ニジュウイチ", "サンビャク", "センキュウヒャクハチジュウロク"]
  assert [katakana.parse_number(t) for t in ("12", "十二", "二十一", "百五", "猫")] == [
      12, 12, 21, 105, None]


def test_vocabulary_encode_decode_round_trip():
  vocabulary = captions.vocabulary_from_chars([" ", "ア", "カ", "イ"])
  assert vocabulary[:5] == ["<pad>", "<s>", "</s>", "<unk>", captions.SPACE_NAME]
  ids = captions.encode("アカイ カ", vocabulary)
  assert ids.shape == (captions.CAPTION_LENGTH,) and ids.dtype == np.int32
  assert list(ids[:6]) == [5, 6, 7, 4, 6, captions.END] and not ids[6:].any()
  assert captions.decode(ids, vocabulary) == "アカイ カ"
  assert captions.decode(captions.encode("アキ", vocabulary), vocabulary) == "ア?"  # UNK
  long = "ア" * 60
  assert captions.truncate(long) == ("ア" * 50, True)
  assert captions.decode(captions.encode(long, vocabulary), vocabulary) == "ア" * 50


@pytest.fixture(scope="module")
def caption_dataset(tmp_path_factory):
  root = tmp_path_factory.mktemp("captions")
  coco_path = sample_captions.write_captions(str(root), 40, seed=2)
  coco = json.load(open(coco_path, encoding="utf-8"))
  coco["annotations"].append({"id": 10**6, "image_id": 0, "caption": "赤い" * 40})  # > 50
  coco["images"].append({"id": 999, "file_name": "missing.jpg"})
  coco["annotations"].append({"id": 10**6 + 1, "image_id": 999, "caption": "丸"})
  json.dump(coco, open(coco_path, "w", encoding="utf-8"), ensure_ascii=False)
  samples.draw_sample(500, 2).image.save(root / "images" / "uncaptioned.jpg")
  out = root / "dataset"
  build_caption_dataset.run([
      "--input_dir", str(root / "images"), "--captions_json", coco_path,
      "--output_dir", str(out), "--image_size", "32", "--val_fraction", "0.2",
      "--test_fraction", "0.2", "--direct_running_mode=in_memory",
      "--direct_num_workers=1"])
  return root, str(out)


def test_builder_converts_keeps_all_captions_and_counts_truncation(caption_dataset):
  root, data = caption_dataset
  builder = dataset_lib.load_builder(data)
  metadata = json.load(open(os.path.join(data, "metadata.json"), encoding="utf-8"))
  vocabulary = metadata["caption_vocabulary"]
  assert len(vocabulary) <= captions.MAX_VOCABULARY and vocabulary[:4] == list(captions.SPECIALS)
  coco = json.load(open(root / "captions.json", encoding="utf-8"))
  long = sum(len(katakana.to_katakana(a["caption"])) > captions.MAX_CHARS
             for a in coco["annotations"] if a["image_id"] != 999)
  assert metadata["captions_truncated"] == long >= 1
  seen = {}
  for split in builder.info.splits:
    for ex in tfds.as_numpy(builder.as_dataset(split=split)):
      texts = [t.decode() for t in ex["captions"]]
      seen[os.path.basename(ex["path"].decode())] = texts
      assert ex["caption_ids"].shape == (len(texts), captions.CAPTION_LENGTH)
      if split == "train":
        assert [captions.decode(i, vocabulary) for i in ex["caption_ids"]] == texts
  assert len(seen) == 40
  # In the file's order: the canonical caption first.
  expected = [katakana.to_katakana(t) for t in sample_captions.japanese_captions(
      samples.draw_sample(7, 2), 7)]
  assert seen["000007.jpg"] == expected
  assert ("アカイ " * 13)[:50] in seen["000000.jpg"]  # cut to 50 characters
  for texts in seen.values():
    assert all(re.fullmatch(r"[\u30a0-\u30ff ]+", t) for t in texts)
  rejected = {os.path.basename(r["path"]): r["reason"] for r in map(
      json.loads, open(os.path.join(data, "rejected.jsonl"), encoding="utf-8"))}
  assert rejected == {"missing.jpg": "no_image_file", "uncaptioned.jpg": "no_label_file"}


def test_sample_captions_name_what_is_drawn_and_no_constant_does_well():
  references = []
  for index in range(300):
    sample = samples.draw_sample(index, 3)
    texts = sample_captions.japanese_captions(sample, index)
    colours = {c for c, _ in sample.shapes}
    kinds = {k for _, k in sample.shapes}
    for text in texts:  # Every phrasing names a colour or kind that is drawn.
      assert any(sample_captions._JA_SHAPES[k][0] in text or sample_captions._JA_SHAPES[k][1] in text
                 for k in kinds)
    assert texts[0] == "と".join(sample_captions._JA_COLORS[c][0] + sample_captions._JA_SHAPES[k][0]
                                for c, k in sample.shapes)  # the canonical caption
    assert colours
    references.append([katakana.to_katakana(t) for t in texts])
  train, test = references[:200], references[200:]
  counts = {}
  for refs in train:
    for text in refs:
      counts[text] = counts.get(text, 0) + 1
  assert max(counts.values()) < 0.1 * len(train)  # no phrasing shared by many images
  _, cer = metrics.best_constant_caption_by_cer(list(counts), test)
  assert cer > 0.3


def test_the_original_learns_the_canonical_caption_and_show_and_tell_draws_one():
  import tensorflow as tf
  ids = tf.constant([[5, 6, 2], [7, 8, 2], [9, 10, 2]], tf.int32)
  example = {"caption_ids": ids}
  original = tasks.get_task("caption").label_fn(0)
  assert [original(example).numpy().tolist() for _ in range(5)] == [[5, 6, 2]] * 5
  drawn = {tuple(tasks.get_task("caption_ar").label_fn(0)(example).numpy())
           for _ in range(60)}
  assert drawn == {(5, 6, 2), (7, 8, 2), (9, 10, 2)}


@pytest.mark.parametrize("task", ["caption", "caption_ar"])
def test_model_shapes(caption_dataset, tmp_path, task):
  _, data = caption_dataset
  model = tasks.get_task(task).build_model(tiny_config(data, tmp_path, task=task), 30)
  images = np.zeros((2, 32, 32, 3), np.uint8)
  inputs = images if task == "caption" else {
      "image": images, "caption_in": np.zeros((2, captions.CAPTION_LENGTH), np.int32)}
  assert model.predict_on_batch(inputs).shape == (2, captions.CAPTION_LENGTH, 30)


@pytest.fixture(scope="module")
def trained_captioners(caption_dataset, tmp_path_factory):
  _, data = caption_dataset
  dirs = {}
  for task in ("caption", "caption_ar"):
    model_dir = tmp_path_factory.mktemp(task)
    tasks.train(tiny_config(data, model_dir, task=task, epochs=3, steps_per_epoch=6,
                               hidden_units=32, learning_rate=3e-3))
    dirs[task] = str(model_dir)
  return dirs


def valid_katakana(text):
  return re.fullmatch(r"[\u30a0-\u30ff ?]*", text) is not None


@pytest.mark.parametrize("task", ["caption", "caption_ar"])
def test_training_steps_and_decoding_give_valid_katakana(trained_captioners, caption_dataset,
                                                         task):
  root, _ = caption_dataset
  model_dir = trained_captioners[task]
  rows = run_dir.read_info(model_dir)
  assert rows["task"] == task
  paths = [str(root / "images" / f"00000{i}.jpg") for i in range(3)]
  for beam in (1, 3):
    results = list(caption.caption_files(model_dir, paths, beam_size=beam))
    assert [p for p, _, _ in results] == paths
    for _, text, error in results:
      assert error == "" and valid_katakana(text) and len(text) <= captions.MAX_CHARS


def _load(model_dir):
  import keras
  return keras.models.load_model(os.path.join(model_dir, "model.keras"))


def _images(n):
  return np.random.default_rng(0).integers(0, 255, (n, 32, 32, 3), dtype=np.uint8)


@pytest.mark.parametrize("beam_size", [1, 2, 3])
def test_batched_decoding_equals_the_one_image_decoder(trained_captioners, beam_size):
  """The batched step decoder (every image and beam per step call) gives, per image, the
  caption of the one-image decoder that re-runs the whole model at every step."""
  model = _load(trained_captioners["caption_ar"])
  images = _images(6)
  batched = decode.Decoder(model).generate(images, beam_size)
  assert batched.shape == (6, captions.CAPTION_LENGTH) and batched.dtype == np.int32
  for image, row in zip(images, batched):
    np.testing.assert_array_equal(
        row, decode.beam_search_reference(model, image, beam_size))
  # Batch composition does not change an image's caption.
  np.testing.assert_array_equal(decode.generate(model, images[2:4], beam_size),
                                batched[2:4])


def test_beams_end_once_and_pad_after(trained_captioners):
  model = _load(trained_captioners["caption_ar"])
  for row in decode.generate(model, _images(4), 3):
    ends = np.nonzero(row == captions.END)[0]
    assert len(ends) <= 1 and (not len(ends) or not row[ends[0] + 1:].any())


def test_the_original_decodes_in_one_pass(trained_captioners):
  model = _load(trained_captioners["caption"])
  images = _images(3)
  expected = np.asarray(model.predict_on_batch(images)).argmax(-1)
  for beam_size in (1, 3):  # Nothing to search: every position is predicted at once.
    np.testing.assert_array_equal(decode.generate(model, images, beam_size), expected)


def test_evaluate_captions_reports_the_constant_baseline(trained_captioners, caption_dataset):
  _, data = caption_dataset
  _, result = tasks.run_evaluation(trained_captioners["caption"], data)
  assert result["num_examples"] > 0
  assert 0 <= result["bleu4"] <= 1 and result["cer"] >= 0
  assert 0 < result["constant_bleu4"] <= 1 and valid_katakana(result["constant_caption"])


def test_caption_metrics_by_hand():
  assert metrics.edit_distance("カタカナ", "カタナ") == 1
  assert metrics.edit_distance("", "アイ") == 2
  # CER: the closer reference counts. "アイウ" vs ["アイエ" (1/3), "アイウエ" (1/4)]
  assert metrics.character_error_rate(["アイウ"], [["アイエ", "アイウエ"]]) == pytest.approx(0.25)
  assert metrics.corpus_bleu(["アイウエオカ"], [["アイウエオカ"]]) == pytest.approx(1.0)
  assert metrics.corpus_bleu(["アイウエ"], [["カキクケ"]]) == 0.0
  # hyp "アイウエオ" (5 chars), ref "アイウエオカ" (6): all n-grams match, brevity exp(1-6/5)
  assert metrics.corpus_bleu(["アイウエオ"], [["アイウエオカ"]]) == pytest.approx(np.exp(1 - 6 / 5))
  # Clipping: "アアアア" against "アア": unigram 2/4, bigram 1/3, trigram 0 → 0
  assert metrics.corpus_bleu(["アアアア"], [["アア"]]) == 0.0
  caption, score = metrics.best_constant_caption(
      ["アイウエオ", "カキクケコ"], [["アイウエオ"], ["アイウエオ"], ["カキクケコ"]])
  assert caption == "アイウエオ" and 0 < score < 1


def test_the_analyzer_uses_unidic_lite_whatever_else_is_installed():
  import unidic_lite
  info = katakana._tagger().dictionary_info  # pylint: disable=protected-access
  assert info and all(d["filename"].startswith(unidic_lite.DICDIR) for d in info)
