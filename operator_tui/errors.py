"""Errors that reach a user as one clear line, never as a traceback."""


class UserError(Exception):
    """A problem the user can fix: bad input, missing file, unreachable endpoint."""

    exit_code = 2
