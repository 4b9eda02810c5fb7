"""The metadata of a finished build, written once after every shard: dataset_info.json last.

The label counts, features.json, the vocabulary, metadata.json, then dataset_info.json (its
presence means the dataset is complete; the workers wrote the shards and the rejections
before); and the summary a job prints.
"""
from __future__ import annotations

import importlib.metadata
import json
import platform
from typing import Any, Callable, Optional

import tensorflow_datasets as tfds
from apache_beam.io.filesystems import FileSystems

from alti2v.data import features as features_lib
from beam_jobs.stages import files
from beam_jobs.stages.elements import ShardInfo

# (vocabulary, label counts) → (metadata.json entries, tag_counts.tsv text or None).
Describe = Callable[[Any, Any], tuple[dict, Optional[str]]]


def library_versions() -> dict[str, str]:
  """The versions that built a dataset, for metadata.json."""
  versions = {"python": platform.python_version()}
  for package in ("alti2v", "tensorflow", "tensorflow-datasets", "apache-beam",
                  "pillow", "numpy"):
    try:
      versions[package] = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
      versions[package] = "not installed"
  return versions


def finalize_dataset(shard_infos: list[ShardInfo], *, output_dir: str,
                     dataset_name: str, features: tfds.features.FeaturesDict,
                     split_sizes: dict[str, tuple[int, int]],
                     rejected_files: list[str], reason_counts: dict[str, int],
                     label_counts_tsv: Optional[str],
                     metadata: dict[str, Any], description: str) -> dict[str, Any]:
  """Writes the label counts and the TFDS metadata (dataset_info.json last); removes _tmp/.

  Runs once, after every shard is written, the rejections' too (rejections.WriteRejections:
  only their file names and counts per reason reach this one worker). Shard lengths come
  from the writer's own counts (re-reading shards does not scale), cross-checked against
  the counts taken before sharding.

  Args:
    rejected_files: the rejection files the workers wrote ([] when nothing was rejected).
    reason_counts: rejections per reason.

  Returns:
    The metadata dict that was written to metadata.json; None when no image was usable
    (then the rejections, if any input was rejected, are the only files written: the job
    reports them, see job.DatasetBuilder.check_result).

  Raises:
    RuntimeError: the shards hold another number of examples than was serialised.
  """
  by_split: dict[str, list[ShardInfo]] = {}
  for info in shard_infos:
    by_split.setdefault(info.split, []).append(info)
  split_infos = []
  file_bytes = {}  # TFRecord framing adds 16 bytes per record: a stat() checks a shard.
  for split in features_lib.SPLITS:
    infos = sorted(by_split.get(split, []), key=lambda s: s.index)
    if not infos:
      continue
    total = infos[0].num_shards
    written = {s.index: s for s in infos}
    lengths, sizes = [], []
    for index in range(total):
      if index not in written:  # No example hashed to this shard: write it empty.
        name = features_lib.shard_filename(dataset_name, split, index, total)
        files.write_text(files.join(output_dir, name), "")
        written[index] = ShardInfo(split, index, total, 0, 0)
      lengths.append(written[index].num_examples)
      sizes.append(written[index].num_bytes)
    file_bytes[split] = [written[i].num_bytes + 16 * written[i].num_examples
                         for i in range(total)]
    expected = split_sizes[split][0]
    if sum(lengths) != expected:
      raise RuntimeError(
          f"split {split}: shards hold {sum(lengths)} examples but {expected} were "
          "serialised; refusing to write metadata for an inconsistent dataset")
    split_infos.append(tfds.core.SplitInfo(
        name=split, shard_lengths=lengths, num_bytes=sum(sizes),
        filename_template=None))
  tmp_dir = files.join(output_dir, features_lib.TMP_DIR)
  if FileSystems.exists(tmp_dir):
    files.delete_paths([tmp_dir])
  if not split_infos:
    return None
  if not rejected_files:  # Nothing rejected: an empty rejected.jsonl says so.
    files.write_text(files.join(output_dir, features_lib.REJECTED_FILE), "")
  if label_counts_tsv is not None:
    files.write_text(files.join(output_dir, features_lib.TAG_COUNTS_FILE), label_counts_tsv)

  metadata = dict(metadata)
  metadata["num_examples"] = {s.name: sum(s.shard_lengths) for s in split_infos}
  metadata["shard_file_bytes"] = file_bytes
  metadata["rejected"] = dict(sorted(reason_counts.items()))
  metadata["library_versions"] = library_versions()
  # features.json, the vocabulary, metadata.json, then dataset_info.json (last).
  tfds.folder_dataset.write_metadata(
      data_dir=output_dir, features=features, split_infos=split_infos,
      filename_template=tfds.core.ShardedFileTemplate(
          data_dir=output_dir, template=tfds.core.naming.DEFAULT_FILENAME_TEMPLATE,
          dataset_name=dataset_name, filetype_suffix=features_lib.FILE_FORMAT),
      check_data=False, description=description,
      metadata=tfds.core.MetadataDict(metadata))
  return metadata


def reason_counts(output_dir: str) -> dict[str, int]:
  """Rejections per reason, read back (streaming) from a build's rejection files."""
  counts: dict[str, int] = {}
  for r in features_lib.read_rejections(output_dir):
    counts[r["reason"]] = counts.get(r["reason"], 0) + 1
  return dict(sorted(counts.items()))


def describe_rejections(output_dir: str) -> Optional[str]:
  """"(reason: count, …); see FILE" of a build's rejections; None when it wrote none."""
  rejected = features_lib.rejection_files(output_dir)
  if not rejected:
    return None
  counts = ", ".join(f"{k}: {v}" for k, v in reason_counts(output_dir).items())
  where = rejected[0] if len(rejected) == 1 else files.join(output_dir, "rejected-*.jsonl")
  return f"({counts}); see {where}"


def summarize(output_dir: str) -> dict[str, Any]:
  """What a finished build holds, read back from its metadata.json."""
  with FileSystems.open(files.join(output_dir, features_lib.METADATA_FILE)) as f:
    metadata = json.load(f)
  summary = {"output_dir": output_dir, "examples": metadata["num_examples"]}
  for key in ("vocabulary_size", "class_counts"):
    if key in metadata:
      summary[key] = metadata[key]
  summary["rejected"] = metadata["rejected"]
  return summary
