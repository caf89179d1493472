"""Field-name and choice checks for every config group: one-line errors naming what is valid."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aelab.errors import AelabError


def check_fields(cfg: Mapping, valid: Sequence[str], where: str) -> None:
  """Raises AelabError naming every key of `cfg` that is not in `valid`."""
  unknown = sorted(set(cfg.keys()) - set(valid))
  if unknown:
    raise AelabError(
        f'unknown field{"s" if len(unknown) > 1 else ""} {", ".join(unknown)} in {where}; '
        f'valid fields: {", ".join(sorted(valid))}')


def check_choice(value: str, choices: Sequence[str], what: str) -> None:
  """Raises AelabError when `value` is not one of `choices`, listing them."""
  if value not in choices:
    raise AelabError(f'unknown {what} {value!r}; valid choices: {", ".join(choices)}')
