"""The one exception type for problems a user can fix (bad config, bad data, missing files)."""


class AelabError(Exception):
  """A user-facing error: `python -m aelab.run` prints its message without a traceback."""
