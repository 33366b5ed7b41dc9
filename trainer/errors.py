"""The one exception type for errors a user can cause (bad data, bad option, unwritable run dir)."""


class TrainerError(Exception):
    """A user-facing error: its message is one line, printed without a traceback."""
