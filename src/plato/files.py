"""Writing a file whole or not at all, for every file Plato writes: through a temporary file in
the same folder, renamed over the real name (a rename within one file system is atomic), so a
reader, or a process killed while writing, never sees half a file under the real name.

    write_file(path, data)                  text (UTF-8) or bytes
    write_safetensors(path, tensors, meta)  tensors (and string metadata) as safetensors
    write_atomically(path, write)           anything `write(temporary_path)` writes
    check_writable(folder)                  before work that ends in writing there
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path


def write_atomically(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Have `write` fill a temporary file beside `path` (creating its folder), then rename it
    to `path`; on any failure the temporary file is removed and the error raised."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):  # a read-only place refuses the unlink too
            tmp.unlink(missing_ok=True)
        raise
    return path


def write_file(path: str | Path, data: str | bytes) -> Path:
    """Write `data` (text as UTF-8) to `path`, creating its folder."""
    return write_atomically(
        path, lambda tmp: tmp.write_bytes(data.encode() if isinstance(data, str) else data))


def write_safetensors(path: str | Path, tensors: dict, metadata: dict[str, str] | None = None
                      ) -> Path:
    """Write tensors (made contiguous) and string metadata as one safetensors file, streamed to
    disk (no copy of the file in memory)."""
    from safetensors.torch import save_file

    tensors = {k: v.contiguous() for k, v in tensors.items()}
    return write_atomically(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def check_writable(folder: str | Path) -> Path:
    """Create `folder` and a file in it, or raise the OSError that says why not (a full disk,
    a read-only place): work that would end in writing there fails before it starts."""
    import tempfile

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".plato-write-test-"):
            pass
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(folder)) from None  # the folder, not the probe
    return folder
