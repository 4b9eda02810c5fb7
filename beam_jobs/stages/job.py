"""The base of every Beam job (flags, checks, run, main) and of every dataset builder (its hooks).

A dataset builder, like TFDS's GeneratorBasedBuilder, overrides only how its source becomes
examples: read_label, label_examples, features, to_example, describe (and add_flags,
validate, and candidates when its images are not found by listing --input_dir). The base
discovers, decodes, dedupes, splits, shards, writes and finalises the same way for all.
"""
from __future__ import annotations

import abc
import argparse
import functools
import json
import logging
import sys
from typing import Any, NamedTuple, Optional, Sequence

import apache_beam as beam
import tensorflow_datasets as tfds
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from alti2v.data import features as features_lib

from beam_jobs.stages import files
from beam_jobs.stages import flags
from beam_jobs.stages import metadata
from beam_jobs.stages import read
from beam_jobs.stages import workers
from beam_jobs.stages import write
from beam_jobs.stages.elements import REJECTED, Candidate, ImageRecord

_FN_RUNNER_LOGGER = "apache_beam.runners.portability.fn_api_runner.fn_runner"


def pipeline_options(beam_args: Sequence[str]) -> PipelineOptions:
  """Beam options; without --runner, the local runner set-up that scales on this job.

  That is FnApiRunner's in_memory mode with one worker thread per core: Pillow,
  sha256 and file reads release the GIL, and in_memory has no gRPC between
  worker and runner. multi_threading (gRPC in-process) and multi_processing
  scaled worse (benchmarks/build_benchmark.py; BUILD.md has the figures).
  No Prism download is attempted, so it runs offline.
  """
  args = list(beam_args)
  if not any(a == "--runner" or a.startswith("--runner=") for a in args):
    args.append("--runner=FnApiRunner")
    if not any(a.startswith("--direct_running_mode") for a in args):
      args.append("--direct_running_mode=in_memory")
    if not any(a.startswith("--direct_num_workers") for a in args):
      args.append("--direct_num_workers=0")  # 0 = one worker per core.
  return PipelineOptions(args)


class NothingUsable(RuntimeError):
  """A build that ran, but where no input became an example: no dataset was written."""


class _InMemoryWorkersFilter(logging.Filter):
  """Drops FnApiRunner's advice against in_memory with several workers.

  It predates the runner's per-worker embedded handlers: each of the
  direct_num_workers gets its own in-process SDK worker, and the partitions of a
  stage run on them concurrently (measured: 1.76x on 2 cores, BUILD.md).
  """

  def filter(self, record: logging.LogRecord) -> bool:
    return "direct_running_mode should be" not in record.getMessage()


def install_log_filter() -> None:
  """Adds _InMemoryWorkersFilter to FnApiRunner's logger, once (a job does it as it runs)."""
  logger = logging.getLogger(_FN_RUNNER_LOGGER)
  if not any(isinstance(f, _InMemoryWorkersFilter) for f in logger.filters):
    logger.addFilter(_InMemoryWorkersFilter())


class Job(abc.ABC):
  """A Beam job's command line: flags → checks → output directory → pipeline, run to the end.

  Attributes:
    module: what python -m runs ("beam_jobs.vision_labels"); --help's program name.
    description: one line for --help.
    worker_extras: setup.py extras its workers need (requirements/<extra>.txt; workers.py).
  """
  module: str
  description: str
  worker_extras: tuple[str, ...] = ()

  def add_flags(self, parser: argparse.ArgumentParser) -> None:
    """Adds the job's own flags to parser."""

  def validate(self, args: argparse.Namespace) -> None:
    """Raises ValueError naming the first flag whose value cannot work."""

  def prepare(self, args: argparse.Namespace) -> None:
    """Readies --output_dir before the pipeline runs (here: creates it)."""
    files.make_dir(args.output_dir)

  @abc.abstractmethod
  def build_pipeline(self, p: beam.Pipeline, args: argparse.Namespace) -> None:
    """Adds the whole job to pipeline p; its work is done when p has run."""

  def summarize(self, args: argparse.Namespace,
                result: beam.runners.runner.PipelineResult) -> dict[str, Any]:
    """What main prints when the job is done."""
    del args, result
    return {}

  def parser(self) -> argparse.ArgumentParser:
    """The job's parser: --flagfile and the job's own flags."""
    parser = flags.job_parser(f"python -m {self.module}", self.description)
    parser.epilog = workers.dataflow_help(self.worker_extras)
    self.add_flags(parser)
    return parser

  def check(self, args: argparse.Namespace) -> None:
    """Every check of the flags' values: validate, and what a base class adds to it."""
    self.validate(args)

  def parse(self, argv: Optional[Sequence[str]]) -> tuple[argparse.Namespace, list[str]]:
    """(the job's flags, Beam's options) from argv (None = sys.argv[1:]); see flags.parse_args."""
    return flags.parse_args(self.parser(), argv)

  def check_result(self, args: argparse.Namespace) -> None:
    """Raises NothingUsable when the finished pipeline did not do the job's work."""

  def check_and_prepare(self, args: argparse.Namespace, beam_args: Sequence[str] = ()) -> None:
    """Checks the flags, Beam's options (workers) and the paths; prepares the output directory.

    Raises:
      ValueError, FileNotFoundError, FileExistsError: a refusal; nothing was written.
    """
    self.check(args)
    workers.check_options(beam_args, self.worker_extras)
    for flag in ("input_dir", "output_dir"):
      files.check_filesystem(getattr(args, flag))
      files.check_no_glob(f"--{flag}", getattr(args, flag))
    files.check_input_dir("--input_dir", args.input_dir)
    self.prepare(args)

  def run_parsed(self, args: argparse.Namespace,
                 beam_args: Sequence[str]) -> beam.runners.runner.PipelineResult:
    """Checks the flags and paths, prepares the output directory, runs the pipeline to the end."""
    self.check_and_prepare(args, beam_args)
    return self.run_prepared(args, beam_args)

  def run_prepared(self, args: argparse.Namespace,
                   beam_args: Sequence[str]) -> beam.runners.runner.PipelineResult:
    """Runs the pipeline to the end (after check_and_prepare), then check_result."""
    install_log_filter()
    p = beam.Pipeline(options=pipeline_options(beam_args))
    self.build_pipeline(p, args)
    result = p.run()
    result.wait_until_finish()
    self.check_result(args)
    return result

  def run(self, argv: Optional[Sequence[str]] = None) -> beam.runners.runner.PipelineResult:
    """Parses argv, runs the job, and returns the finished Beam result (metrics).

    Raises:
      SystemExit: a flag that is neither the job's nor Beam's (see flags.parse_args).
    """
    return self.run_parsed(*self.parse(argv))

  def main(self, argv: Optional[Sequence[str]] = None) -> None:
    """The job's __main__: runs it, then prints its summary as JSON.

    A refusal (check_and_prepare's) ends it with one line and status 2, a build that
    gave nothing usable (NothingUsable) with one line and status 1.
    """
    logging.getLogger().setLevel(logging.INFO)
    args, beam_args = self.parse(argv)
    try:
      self.check_and_prepare(args, beam_args)
    except (ValueError, OSError) as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(2)
    try:
      result = self.run_prepared(args, beam_args)
    except NothingUsable as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(1)
    print(json.dumps(self.summarize(args, result), indent=2))


class Labelled(NamedTuple):
  """What a builder's label_examples hands to the writer.

  Attributes:
    examples: (split, ImageRecord[stored label]).
    vocabulary: the label names: a side input (AsSingleton) or a constant list.
    label_counts: a PCollection of one element, given to describe.
    rejections: the labelling step's rejection PCollections.
  """
  examples: beam.PCollection
  vocabulary: Any
  label_counts: beam.PCollection
  rejections: tuple = ()


class DatasetBuilder(Job):
  """A job that writes a tensorflow-datasets dataset; a subclass: how its source becomes examples.

  Attributes:
    default_dataset_name: --dataset_name's default.
    input_help: --input_dir's help.
    label_extension: the label file paired with each image by name (".txt"), or None.
    dataset_description: the description in dataset_info.json.
  """
  default_dataset_name: str
  input_help: str
  label_extension: Optional[str] = None
  dataset_description: str

  # -- The hooks a builder overrides.

  @abc.abstractmethod
  def read_label(self, candidate: Candidate, args: argparse.Namespace) -> Any:
    """A candidate's raw label (runs on the workers); raises imaging.Rejected."""

  @abc.abstractmethod
  def label_examples(self, with_split: beam.PCollection,
                     args: argparse.Namespace) -> Labelled:
    """(split, ImageRecord[raw label]) → the stored labels, the vocabulary and the counts."""

  @abc.abstractmethod
  def features(self, vocabulary: Sequence[str]) -> tfds.features.FeaturesDict:
    """The dataset's feature spec, for this vocabulary."""

  @abc.abstractmethod
  def to_example(self, record: ImageRecord) -> dict:
    """ImageRecord[stored label] → the feature dict of its example (write.example_fields +)."""

  @abc.abstractmethod
  def describe(self, vocabulary: Sequence[str],
               label_counts: Any) -> tuple[dict, Optional[str]]:
    """(metadata.json entries besides builder and build_args, tag_counts.tsv text or None)."""

  def label_files(self, vocabulary: Sequence[str],
                  args: argparse.Namespace) -> dict[str, str]:
    """Files to write beside the vocabulary ({file name: text}), before dataset_info.json."""
    del vocabulary, args
    return {}

  def candidates(self, p: beam.Pipeline, args: argparse.Namespace
                 ) -> tuple[beam.PCollection, tuple]:
    """The Candidates (and rejections) of the source: every image under --input_dir."""
    discovered = p | "Discover" >> read.DiscoverImages(args.input_dir, self.label_extension)
    return discovered.candidates, (discovered[REJECTED],)

  # -- The same for every builder.

  def parser(self) -> argparse.ArgumentParser:
    parser = flags.job_parser(f"python -m {self.module}", self.description)
    parser.epilog = workers.dataflow_help(self.worker_extras)
    flags.add_dataset_flags(parser, self.input_help, self.default_dataset_name)
    self.add_flags(parser)
    return parser

  def check(self, args: argparse.Namespace) -> None:
    self.validate(args)
    flags.validate_dataset_flags(args)

  def prepare(self, args: argparse.Namespace) -> None:
    files.prepare_output_dir(args.output_dir, args.overwrite, args.dataset_name)

  def summarize(self, args, result) -> dict[str, Any]:
    return metadata.summarize(args.output_dir)

  def check_result(self, args: argparse.Namespace) -> None:
    """Raises NothingUsable when the build wrote no dataset (metadata.finalize_dataset)."""
    if FileSystems.exists(files.join(args.output_dir, features_lib.DATASET_INFO_FILE)):
      return
    if (rejected := metadata.describe_rejections(args.output_dir)) is None:
      raise NothingUsable(f"no image found under {args.input_dir}; nothing was written")
    raise NothingUsable(f"no image was usable: every input was rejected {rejected}")

  def _describe(self, vocabulary: Sequence[str], label_counts: Any,
                args: argparse.Namespace) -> tuple[dict, Optional[str]]:
    entries, counts_tsv = self.describe(vocabulary, label_counts)
    # Run once, after every shard and before the metadata: dataset_info.json still comes last.
    for name, text in self.label_files(vocabulary, args).items():
      files.write_text(files.join(args.output_dir, name), text)
    return {"builder": self.module, **entries}, counts_tsv

  def build_pipeline(self, p: beam.Pipeline, args: argparse.Namespace) -> None:
    candidates, found_rejections = self.candidates(p, args)
    # Candidate
    with_split, read_rejections = candidates | "DecodeAndSplit" >> read.DecodeAndSplit(
        args, functools.partial(self.read_label, args=args))
    # (split, ImageRecord[raw label])
    labelled = self.label_examples(with_split, args)
    # (split, ImageRecord[stored label])
    _ = labelled.examples | "WriteDataset" >> write.WriteDataset(
        args, (*found_rejections, *read_rejections, *labelled.rejections), self.features,
        self.to_example, labelled.vocabulary, labelled.label_counts,
        functools.partial(self._describe, args=args),
        self.dataset_description)
