"""The one error type the CLI and nodes turn into a one-line message (exit code 2) instead of a traceback."""


class InputError(ValueError):
    """Bad or unreadable input; the message names the file, episode, joint or field at fault."""
