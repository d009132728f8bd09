"""Folder guards: OSC names files only inside the folders the user configured.

Every path that comes from a message (a clip to continue, a preset name) or is built from one
(an output file name) goes through `inside`, which resolves symlinks and `..` and refuses
anything that lands outside the folder.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

_UNSAFE = re.compile(r"[^A-Za-z0-9]+")
NAME_MAX = 255  # bytes in one path component (Linux, macOS)
PATH_MAX = 4096


class PathRefused(ValueError):
    """A path that would leave its folder (or is not a plain relative name)."""


def inside(folder: str | Path, name: str) -> Path:
    """Resolve `name` relative to `folder`, refusing absolute paths and escapes.

    Args:
        folder: the allowed folder.
        name: a relative path from a message.

    Returns:
        The resolved path, guaranteed to lie under (not be) the resolved `folder`.

    Raises:
        PathRefused: an empty, over-long or absolute name, or one that resolves outside
            `folder` or to the folder itself.
    """
    if not name or "\x00" in name:
        raise PathRefused("empty file name or a NUL in it")
    relative = Path(name)
    if (relative.is_absolute() or name.startswith(("~", "\\"))
            or (relative.parts and ":" in relative.parts[0])):
        raise PathRefused(f"{name!r} is not a relative path inside {folder}")
    # Longer than the OS allows: refused here, as the OSError it would raise later is no answer.
    if len(name.encode()) > PATH_MAX or any(len(p.encode()) > NAME_MAX for p in relative.parts):
        raise PathRefused(f"{name[:40]!r}... is longer than a file name may be")
    root = Path(folder).resolve()
    try:
        path = (root / relative).resolve()  # follows symlinks: a link out is refused below
    except (OSError, RuntimeError) as error:  # RuntimeError: a symlink loop (Python < 3.13)
        raise PathRefused(f"{name!r} cannot be resolved ({error})") from None
    if root not in path.parents:
        raise PathRefused(f"{name!r} leaves the folder {root}" if path != root
                          else f"{name!r} names the folder {root} itself, not a file in it")
    return path


def slug(text: str, limit: int = 40) -> str:
    """A file-name-safe, lower-case fragment of `text` ('Warm strings!' → 'warm-strings')."""
    return _UNSAFE.sub("-", text.lower()).strip("-")[:limit].rstrip("-") or "clip"


def output_name(job_id: str, prompt: str, suffix: str) -> str:
    """A unique, readable output file name: `20260101-120000-j3-warm-strings.wav`."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{slug(job_id, 64)}-{slug(prompt)}.{suffix}"
