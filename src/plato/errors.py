"""Errors a user can cause, and faults of the machine said in one line. The CLI prints their
message, without a traceback, and exits 1."""

from __future__ import annotations

import errno
import re


class PlatoError(Exception):
    """Base class: the message says what was wrong and what to do."""


class DatasetError(PlatoError):
    """A dataset is missing, corrupt, or unknown."""


class ModelError(PlatoError):
    """An unknown model name, a bad option, or a bad cut point."""


class CheckpointError(PlatoError):
    """A checkpoint is missing, truncated, altered, or does not match its metadata."""


class TrainingError(PlatoError):
    """Training diverged (non-finite loss) or was configured wrongly."""


class SpecError(PlatoError):
    """A sweep spec field is missing or invalid, or the spec cannot be read."""


class SettingError(PlatoError):
    """A setting of a config object (StitchConfig, SimilarityConfig) is invalid; `setting`
    names it, so a spec can name its field."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(message)
        self.setting = setting


# Faults of the machine: what the user can do about each (the CLI's one line).
FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
NOT_WRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)


def fault_message(e: OSError | Exception) -> str:
    """One line for a fault of the machine (an OSError, or SQLite's error for one): a full
    disk, a read-only place, a missing permission or file; what it was and what to do."""
    text = str(e).lower()
    code = getattr(e, "errno", None)
    if code is None and (found := re.search(r"os error (\d+)", text)):  # safetensors' words
        code = int(found.group(1))
    where = f" ({e.filename})" if getattr(e, "filename", None) else ""
    if code in FULL or "disk is full" in text:
        return (f"no space left to write{where}: free some, or choose another place (--out, "
                "PLATO_CACHE); finished work is kept, and running again resumes")
    if code in NOT_WRITABLE or "readonly" in text or "read-only" in text:
        return (f"cannot write{where}: the place is read-only or not permitted; choose a "
                "writable one (--out, PLATO_CACHE) or change its permissions")
    if "disk i/o error" in text or "unable to open" in text:  # SQLite's words, no errno
        return (f"the disk refused a read or write{where} ({e}): is it full or read-only? "
                "free space or choose a writable place (--out, PLATO_CACHE)")
    if code == errno.ENOENT:
        return f"no such file or folder{where}"
    return f"{getattr(e, 'strerror', None) or e}{where}"


# Control characters a terminal acts on (C0 but tab and newline, DEL, C1): a user's string
# printed raw could retitle, clear or rewrite the user's terminal.
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x00, 0x09), *range(0x0b, 0x20), 0x7f,
                                         *range(0x80, 0xa0))}


def printable(text: str) -> str:
    """`text` with every control character a terminal acts on escaped (`\\x1b`)."""
    return str(text).translate(_CONTROLS)


# Exit codes (README "What Plato promises"): 0 done; 1 an error, one line (or `plato check`
# with a failing check); 2 a command line click refused (an unknown option, a missing
# argument); 3 a sweep that finished with failed cells; 130 interrupted.
EXIT_FAILED_CELLS = 3
