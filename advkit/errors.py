"""The one error type the CLI turns into a clean one-line message and exit code 2."""


class AdvkitError(ValueError):
    """Bad input from the user: an unknown name, a missing file, a value out of range.

    Subclasses ``ValueError`` so library callers can catch either.
    """
