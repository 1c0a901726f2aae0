"""Errors raised for bad user input.

Every message says what is wrong and what to do about it; the CLI prints it as one line and the
app shows it as a message, never as a traceback.
"""
from __future__ import annotations

import errno


class MatgenInputError(ValueError):
    """Bad user input (file, image, option). ``str(err)`` is a complete, user-facing sentence."""


class DiskFullError(MatgenInputError):
    """Writing failed because the disk (or the user's quota) is full."""


def os_error_message(err: OSError, path=None, doing: str = "write") -> str:
    """A one-line, user-facing sentence for an OSError met while reading or writing ``path``."""
    where = path if path is not None else (getattr(err, "filename", None) or "the output")
    code = getattr(err, "errno", None)
    if code in (errno.ENOSPC, errno.EDQUOT):
        return (f"Disk full while writing {where}; free some space (or choose a folder on another "
                f"disk) and try again.")
    if code == errno.EROFS:
        return f"Cannot {doing} {where}: the file system is read-only; choose a folder you can write to."
    if code in (errno.EACCES, errno.EPERM):
        return f"Cannot {doing} {where}: permission denied; choose a folder you can write to."
    if code == errno.ENOENT:
        return f"Cannot {doing} {where}: no such file or folder; check the path."
    if code == errno.EISDIR:
        return f"Cannot {doing} {where}: it is a folder; give a file name."
    if code == errno.ENOTDIR:
        return f"Cannot {doing} {where}: part of the path is a file, not a folder; check the path."
    reason = getattr(err, "strerror", None) or str(err)
    return f"Cannot {doing} {where}: {reason}; check the path and free disk space."


def is_disk_full(err: BaseException) -> bool:
    """True for ENOSPC/EDQUOT, also when torch wraps it in a RuntimeError message."""
    if isinstance(err, OSError) and getattr(err, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(err).lower()
    return "no space left" in text or "disk quota" in text
