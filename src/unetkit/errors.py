"""The one exception type the CLI reduces to a single line; anything else is a bug and keeps its traceback."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input (paths, file contents, config values), in a message that names the
    file or field and what is wrong: shown as one line on stderr, exit code 2."""

    exit_code = 2
