"""Writing a file whole or not at all: through a temporary file in the same folder, renamed
over the real name (a rename within one file system is atomic), so a reader, or a process
killed while writing, never sees half a file under the real name."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def write_file(path: str | Path, data: str | bytes) -> Path:
    """Write `data` (text as UTF-8) to `path`, creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):  # a read-only place refuses the unlink too
            tmp.unlink(missing_ok=True)
        raise
    return path
