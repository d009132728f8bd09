"""Atomic file writes: a file appears under its final name complete, or not at all."""

import json
import os
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# The temporary names atomic_path makes: `.take.wav.tmp-1a2b3c4d.wav`.
_TEMPORARY = re.compile(r"^\..+\.tmp-[0-9a-f]{8}(\.[^.]+)?$")


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write to; on success it is renamed to `path`.

    The temporary file lives in the same directory (so the rename is atomic) and keeps the
    final suffix, e.g. `.take.wav.tmp-1a2b3c4d.wav`, for libraries that pick a format from it.
    If the block raises, the temporary file is removed and `path` is left untouched.

    Args:
        path: the final file name; missing parent directories are created.

    Yields:
        The temporary path. It does not exist yet: the block must create it.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    # Not created here (unlike mkstemp) so the writer's file gets the usual umask permissions.
    tmp = final.with_name(f".{final.name}.tmp-{secrets.token_hex(4)}{final.suffix}")
    try:
        yield tmp
        # Flush to disk before the rename, so a crash cannot leave a renamed but empty file.
        with open(tmp, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(tmp, final)
    except BaseException:  # Ctrl-C included: never leave temporary files behind
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write `data` to `path` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write `text` as UTF-8 to `path` atomically and return the path."""
    # Encoded by hand so the bytes are the same on every platform (no newline translation).
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike[str], obj: Any, *, indent: int = 2) -> Path:
    """Write `obj` as human-readable JSON (keys in insertion order) atomically."""
    text = json.dumps(obj, indent=indent, sort_keys=False, ensure_ascii=False)
    return write_text_atomic(path, text + "\n")


def remove_stale_temporaries(folder: str | os.PathLike[str], older_than: float = 60.0
                             ) -> list[Path]:
    """Delete atomic_path's temporary files left in `folder` by a killed process.

    A process killed with SIGKILL (or a power cut) cannot clean up; its temporary file never
    reached the final name, so it is garbage. Only files older than `older_than` seconds go:
    a younger one may belong to a writer that is still running.

    Returns:
        The files removed.
    """
    removed = []
    cutoff = time.time() - older_than
    for path in Path(folder).glob(".*.tmp-*"):
        try:
            if _TEMPORARY.match(path.name) and path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed.append(path)
        except OSError:  # gone meanwhile, or not ours to delete: leave it
            continue
    return removed
