"""Errors raised for bad user input.

Every message says what is wrong and what to do about it; the CLI prints it as one line and the
app shows it as a message, never as a traceback.
"""


class MatgenInputError(ValueError):
    """Bad user input (file, image, option). ``str(err)`` is a complete, user-facing sentence."""
