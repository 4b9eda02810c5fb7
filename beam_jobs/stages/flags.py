"""The command line of every Beam job, the same way as every alti2v command.

--help lists the job's own flags; a boolean is --name / --noname; --flagfile FILE reads flags
from a file (one a line, as absl reads them); any flag that is neither the job's nor one of
Beam's pipeline options is an error, never silently dropped.
"""
from __future__ import annotations

import argparse
import difflib
import re
import sys
from typing import Optional, Sequence

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from alti2v.data import imaging

FLAGFILE = "--flagfile"


class BoolFlag(argparse.Action):
  """A boolean as absl spells it, like every alti2v command: --name sets it, --noname clears it.

  parser.add_argument("--overwrite", action=BoolFlag, default=False, help=...);
  the last of the two on the command line wins.
  """

  def __init__(self, option_strings, dest, default=False, help=None):  # pylint: disable=redefined-builtin
    (name,) = option_strings
    super().__init__([name, "--no" + name[2:]], dest, nargs=0, default=default, help=help)

  def __call__(self, parser, namespace, values, option_string=None):
    setattr(namespace, self.dest, option_string == self.option_strings[0])

  def format_usage(self) -> str:
    return " | ".join(self.option_strings)


def job_parser(prog: str, description: str) -> argparse.ArgumentParser:
  """An empty parser for a Beam job's own flags, with --flagfile (parse it with parse_args)."""
  parser = argparse.ArgumentParser(
      prog=prog, description=description + " Other flags must be Beam's pipeline options "
      "(e.g. --runner=DataflowRunner --project ... --region ...); any other is an error.",
      formatter_class=argparse.ArgumentDefaultsHelpFormatter,
      allow_abbrev=False)  # A prefix of one of our flags could also be one of Beam's.
  # Expanded by parse_args before parsing; here for --help. SUPPRESS keeps it out of
  # the parsed flags (and so out of metadata.json's build_args).
  parser.add_argument(FLAGFILE, metavar="FILE", default=argparse.SUPPRESS,
                      help="Read flags from FILE (local or gs://): one a line, "
                      "--name=value, # starts a comment; flags given after it win.")
  return parser


def _read_flagfile(parser: argparse.ArgumentParser, path: str) -> list[str]:
  try:
    with FileSystems.open(path) as f:
      text = f.read().decode("utf-8")
  except (OSError, IOError, ValueError) as e:
    parser.exit(2, f"{parser.prog}: error: cannot read {FLAGFILE} {path}: {e}\n")
  lines = (line.strip() for line in text.splitlines())
  return [line for line in lines if line and not line.startswith(("#", "//"))]


def expand_flagfiles(parser: argparse.ArgumentParser, argv: Sequence[str],
                     _reading: tuple[str, ...] = ()) -> list[str]:
  """argv with every --flagfile FILE replaced by the flags in FILE, in place.

  absl's flagfile format: one flag a line (--name=value, or --name for a boolean),
  blank lines and lines starting with # or // skipped; a flagfile may name another.
  In place, so that a flag given after --flagfile on the command line wins.

  Raises:
    SystemExit (2): a flagfile cannot be read, or names itself (directly or not).
  """
  expanded: list[str] = []
  args = iter(argv)
  for arg in args:
    if arg == "--":
      expanded.append(arg)
      expanded.extend(args)
      break
    if arg == FLAGFILE or arg.startswith(FLAGFILE + "="):
      path = arg.split("=", 1)[1] if "=" in arg else next(args, None)
      if not path:
        parser.exit(2, f"{parser.prog}: error: {FLAGFILE} needs a file name\n")
      if path in _reading:
        parser.exit(2, f"{parser.prog}: error: {FLAGFILE} {path} reads itself "
                    f"(via {' → '.join(_reading)})\n")
      expanded.extend(expand_flagfiles(parser, _read_flagfile(parser, path),
                                       (*_reading, path)))
    else:
      expanded.append(arg)
  return expanded


def _beam_option_parser() -> argparse.ArgumentParser:
  """The parser Beam itself builds from every PipelineOptions class (public API only)."""
  parsers = []
  PipelineOptions([]).get_all_options(add_extra_args_fn=parsers.append)
  return parsers[0]


def _option_names(parser: argparse.ArgumentParser) -> list[str]:
  return [name for action in parser._actions  # pylint: disable=protected-access
          for name in action.option_strings]


def parse_args(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]]
               ) -> tuple[argparse.Namespace, list[str]]:
  """The job's flags, and the rest for PipelineOptions; a flag neither knows is an error.

  PipelineOptions only logs "Discarding unparseable args" and runs on: a misspelt
  flag (--imagesize, --noretry_errror) would be dropped and its default used.

  Args:
    parser: the job's parser (job_parser and the job's flags).
    argv: the arguments without the program name; None = sys.argv[1:].

  Returns:
    (the job's arguments, Beam's arguments), flagfiles expanded.

  Raises:
    SystemExit (2): after one line on stderr naming the first unknown flag.
  """
  argv = expand_flagfiles(parser, sys.argv[1:] if argv is None else argv)
  args, rest = parser.parse_known_args(argv)
  beam_parser = _beam_option_parser()
  _, unknown = beam_parser.parse_known_args(rest)
  if unknown:
    flag = next((a for a in unknown if a.startswith("-")), unknown[0]).split("=", 1)[0]
    close = difflib.get_close_matches(
        flag, _option_names(parser) + _option_names(beam_parser), n=1)
    # parser.error's format without its usage block: the one line that matters.
    parser.exit(2, f"{parser.prog}: error: unrecognized argument {flag}: neither this "
                "job's flag nor a Beam pipeline option"
                + (f" (did you mean {close[0]}?)" if close else " (--help lists ours)") + "\n")
  return args, rest


def add_dataset_flags(parser: argparse.ArgumentParser, input_help: str,
                      default_name: str) -> None:
  """The flags of every dataset builder; a builder adds its own after them."""
  parser.add_argument("--input_dir", required=True, help=input_help)
  parser.add_argument("--output_dir", required=True,
                      help="Dataset directory to create; local or gs://.")
  parser.add_argument("--dataset_name", default=default_name,
                      help="Name in the shard file names and dataset_info.json.")
  parser.add_argument("--image_size", type=int, default=256,
                      help="Longer side of the stored images, in pixels (never upscaled).")
  parser.add_argument("--max_pixels", type=int, default=imaging.DEFAULT_MAX_PIXELS,
                      help="Images with more pixels are rejected (too_many_pixels).")
  parser.add_argument("--val_fraction", type=float, default=0.1,
                      help="Share of images in the validation split.")
  parser.add_argument("--test_fraction", type=float, default=0.1,
                      help="Share of images in the test split.")
  parser.add_argument("--num_shards", type=int, default=0,
                      help="Shards per split (capped at its example count); 0 = "
                      "automatic, shards of about 150 MB.")
  parser.add_argument("--overwrite", action=BoolFlag, default=False,
                      help="Replace the dataset in a non-empty output directory.")


def validate_dataset_flags(args: argparse.Namespace) -> None:
  """Raises ValueError naming the first common flag whose value cannot work."""
  if args.image_size < 8:
    raise ValueError(f"--image_size must be >= 8, got {args.image_size}")
  if args.num_shards < 0:
    raise ValueError(f"--num_shards must be >= 0, got {args.num_shards}")
  for name in ("val_fraction", "test_fraction"):
    value = getattr(args, name)
    if not 0.0 <= value < 1.0:
      raise ValueError(f"--{name} must be in [0, 1), got {value}")
  if args.val_fraction + args.test_fraction >= 1.0:
    raise ValueError("--val_fraction + --test_fraction must be < 1 (no train split left)")
  if not re.fullmatch(r"[a-z][a-z0-9_]*", args.dataset_name):
    raise ValueError(f"--dataset_name must be snake_case, got {args.dataset_name!r}")
