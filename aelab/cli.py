"""The one front of aelab's command lines: `guard` (errors as one line, exit 2) and `Parser` for
every CLI (run, sweep, bench, inspect, frontier), and `main` for those that take `--config`
(python -m aelab.run, aelab.sweep, aelab.bench).

    cli.main(argv, prog='python -m aelab.run', doc=__doc__, flags=FLAGS, run=main)

reads `--config=FILE.py[:ARG]` (or `--config FILE.py[:ARG]`) and loads it (aelab.config.load),
applies every `--config.a.b=VALUE` (or `--config.a.b VALUE`) in order, parses the CLI's own flags,
then calls `run(config, flags, spec, overrides)`: the config, the flags' values by name, the
config argument and the overrides as `--config.a.b=VALUE` strings. `-h`, `--help` and
`--helpfull` print the usage, the doc and the flags and exit 0. Every error (a bad config file,
an unknown field, a value of the wrong type, an unknown, bad or missing flag, or an AelabError
raised by `run`) is one line `aelab: error: ...` on stderr, with exit code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import textwrap
from collections.abc import Callable, Sequence
from typing import Any

import ml_collections

from aelab import errors
from aelab.config import files, overrides as overrides_lib
from aelab.errors import AelabError

HELP = ('-h', '--help', '--helpfull')
_PREFIX = '--config.'


@dataclasses.dataclass(frozen=True)
class Flag:
  """A flag `--name=VALUE` (or `--name VALUE`) of type str, int, float or bool (a bare `--name`
  is True; `--name=false` is False); a required one must be given and not empty; a `repeat` one
  may be given many times and its value is the list of values, in order (default: [])."""
  name: str
  type: type
  default: Any
  help: str
  required: bool = False
  repeat: bool = False


# The flags of a run of several processes (aelab/trainer/distributed.py).
DISTRIBUTED = (
    Flag('coordinator_address', str, '', 'HOST:PORT of process 0, where the processes of a '
         'multi-process run meet (with --num_processes and --process_id). Without it, the '
         'cluster is detected on a TPU pod slice, under SLURM and under Open MPI.'),
    Flag('num_processes', int, 0, 'The number of processes of a multi-process run.'),
    Flag('process_id', int, -1, 'This process\'s index in [0, num_processes).'),
    Flag('peer_timeout', int, 30, 'Seconds without a sign of life from another process (or the '
         'coordinator) after which this one stops, exit code 75.'),
    Flag('coordinator_timeout', int, 60, 'Seconds to wait at the start for all processes to meet '
         'at --coordinator_address (or the cluster\'s coordinator); past it, one line, exit 2.'),
)

Run = Callable[[ml_collections.ConfigDict, argparse.Namespace, str, list[str]], None]


def main(argv: Sequence[str] | None, *, prog: str, doc: str, flags: Sequence[Flag],
         run: Run) -> None:
  """Parses `argv` (default: sys.argv[1:]) and calls `run`; see the module doc."""
  argv = list(sys.argv[1:] if argv is None else argv)
  if any(arg in HELP for arg in argv):
    with guard():
      print(help_text(prog, doc, flags), flush=True)
    sys.exit(0)
  with guard():
    spec, changes, rest = split(argv)
    config = files.load(spec)
    overrides_lib.apply_args(config, changes)
    config.lock()  # run() may change fields but not add any (as ml_collections' config flags)
    values = _parser(prog, flags).parse_args(rest)
    for flag in flags:
      if flag.repeat and getattr(values, flag.name) is None:
        setattr(values, flag.name, list(flag.default or ()))
    _init_absl(prog)
    run(config, values, spec, [_show(path, text) for path, text in changes])


@contextlib.contextmanager
def guard():
  """Every CLI's body: an AelabError, or an OSError (a full disk, a read-only directory: the
  OS's own words and the path), ends the process with one line and exit code 2."""
  try:
    yield
  except AelabError as e:
    errors.exit_with(str(e))
  except BrokenPipeError:  # the reader went away (`--help | head`): nothing left to say
    sys.stderr.close()
    os._exit(0)
  except OSError as e:
    errors.exit_with(f'{e.strerror or e}: {e.filename or ""}'.rstrip(': '))


def split(argv: Sequence[str]) -> tuple[str, list[tuple[str, str | None]], list[str]]:
  """(config spec, [(field path, text or None)], the other arguments) of a command line."""
  spec, changes, rest, i = None, [], [], 0
  while i < len(argv):
    name, eq, value = argv[i].partition('=')
    i += 1
    takes_next = not eq and i < len(argv) and not argv[i].startswith('--')
    if takes_next and (name == '--config' or name.startswith(_PREFIX)):
      value, eq, i = argv[i], '=', i + 1
    if name == '--config':
      if spec is not None:
        raise AelabError(f'--config is given twice ({spec!r}, {value!r}); pass one config file')
      spec = value if eq else ''
    elif name.startswith(_PREFIX):
      changes.append((name[len(_PREFIX):], value if eq else None))
    else:
      rest.append(argv[i - 1])
  if not spec:
    raise AelabError('--config is required: pass --config=experiments/NAME.py[:ARG], e.g. '
                     '--config=experiments/mnist_ae.py:tiny')
  return spec, changes, rest


def _show(path: str, text: str | None) -> str:
  return f'{_PREFIX}{path}' + ('' if text is None else f'={text}')


class Parser(argparse.ArgumentParser):
  """argparse whose usage errors are AelabErrors (one line, exit 2, through `guard`); every CLI's
  own flags parse with it."""

  def error(self, message: str):
    raise AelabError(f'{message} (see {self.prog} --help)')


def _parser(prog: str, flags: Sequence[Flag]) -> argparse.ArgumentParser:
  parser = Parser(prog=prog, add_help=False, allow_abbrev=False)
  for flag in flags:
    extra = dict(nargs='?', const=True) if flag.type is bool else {}
    if flag.repeat:
      extra['action'] = 'append'
    parser.add_argument(f'--{flag.name}', type=_converter(flag),
                        default=None if flag.repeat else flag.default, required=flag.required,
                        help=flag.help, **extra)
  return parser


def _converter(flag: Flag) -> Callable[[str], Any]:
  def convert(text: str) -> Any:
    if flag.required and not text:
      raise argparse.ArgumentTypeError(f'is empty; pass a value, --{flag.name}={_metavar(flag)}')
    try:
      return _bool(text) if flag.type is bool else flag.type(text)
    except ValueError:
      raise argparse.ArgumentTypeError(
          f'{text!r} is not {"an" if flag.type is int else "a"} {flag.type.__name__}') from None
  return convert


def _bool(text: str) -> bool:
  if text.lower() in ('true', 't', '1', 'yes'):
    return True
  if text.lower() in ('false', 'f', '0', 'no'):
    return False
  raise ValueError(text)


def _metavar(flag: Flag) -> str:
  return flag.name.upper()


def _form(flag: Flag) -> str:
  return f'--{flag.name}' if flag.type is bool else f'--{flag.name}={_metavar(flag)}'


def _usage(flag: Flag) -> str:
  text = _form(flag) if flag.required else f'[{_form(flag)}]'
  return f'{text} ...' if flag.repeat else text


def _init_absl(prog: str) -> None:
  """What absl's app.run does before main: its own flags at their defaults, its log handler."""
  from absl import flags as absl_flags, logging as absl_logging
  absl_flags.FLAGS([prog], known_only=True)
  absl_logging.use_absl_handler()


def help_text(prog: str, doc: str, flags: Sequence[Flag]) -> str:
  """usage line, the CLI's doc, then one entry per flag."""
  own = ' '.join(_usage(f) for f in flags)
  rows = [('--config=FILE.py[:ARG]', 'Experiment config file[:arg]: get_config(ARG) of FILE.py. '
           'Required.'),
          ('--config.FIELD=VALUE', 'Overrides a config field, e.g. --config.train.num_steps=300 '
           "or --config.model.hidden='(128, 16)'; also --config.FIELD VALUE.")]
  for f in flags:
    note = (' Required.' if f.required else ' Repeatable.' if f.repeat
            else f' (default: {f.default!r})')
    rows.append((_form(f), f.help + note))
  lines = [f'usage: {prog} --config=FILE.py[:ARG] [--config.FIELD=VALUE ...] {own}'.rstrip(), '',
           doc.strip(), '', 'flags:']
  lines += [f'  {name}\n' + textwrap.fill(text, 96, initial_indent=' ' * 6,
                                             subsequent_indent=' ' * 6) for name, text in rows]
  lines.append('  -h, --help, --helpfull\n      Shows this help and exits.')
  return '\n'.join(lines)
