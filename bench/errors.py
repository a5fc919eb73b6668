"""The one error type the CLI turns into a one-line message and a non-zero exit."""


class BenchError(Exception):
    """A user-facing error: bad input, missing data, mismatched checkpoint. Exit code 2."""

    exit_code = 2
