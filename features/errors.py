"""User-facing errors: bad input or bad usage, reported without a traceback and exit code 2."""


class NotaloneError(Exception):
    """An error the user can fix (bad data, bad arguments, missing model); exit code 2."""

    exit_code = 2
