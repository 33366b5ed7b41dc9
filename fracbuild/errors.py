"""The one exception type for errors a user can cause (bad option, bad recipe, missing file)."""


class FracbuildError(Exception):
    """A user-facing error: its message is one line, printed without a traceback."""
