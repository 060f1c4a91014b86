"""Image paths given on a command line: folders expanded to the images in them, each problem
said as what it is, and names made safe to print on one line. Shared by ``edge-app liveness``
and ``edge-app forensics`` (both flows' still-image commands)."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Iterable, Iterator

from edge_app.images import IMAGE_SUFFIXES


def expand_paths(paths: Iterable[str | Path]) -> Iterator[tuple[Path, str]]:
    """(path, problem) pairs: files as given, directories expanded to their images.

    A problem is reported for a directory with no images, one that cannot be read, a path
    that does not exist and a symlink loop, each said as what it is, so the caller can list
    it and go on with the rest. Whether a file is a regular file is the loader's check.
    """
    for p in map(Path, paths):
        try:
            st = p.stat()
        except FileNotFoundError:
            yield p, (f"{p}: broken symbolic link (its target does not exist)" if p.is_symlink()
                      else f"{p}: no such file or directory")
            continue
        except PermissionError:
            yield p, f"{p}: cannot be reached (permission denied on a folder above it)"
            continue
        except OSError as exc:
            why = "symbolic link loop" if exc.errno == errno.ELOOP else (exc.strerror or str(exc))
            yield p, f"{p}: {why}"
            continue
        if not stat.S_ISDIR(st.st_mode):
            yield p, ""
            continue
        images, problems = [], []

        def unreadable(exc: OSError) -> None:
            why = "permission denied" if isinstance(exc, PermissionError) else (exc.strerror or str(exc))
            problems.append(f"{exc.filename}: folder cannot be read ({why})")

        for root, dirs, files in os.walk(p, onerror=unreadable):
            dirs.sort()
            images += [Path(root) / f for f in files if Path(f).suffix.lower() in IMAGE_SUFFIXES]
        for problem in problems:
            yield p, problem
        if not images and not problems:
            yield p, f"{p}: directory holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})"
        for f in sorted(images):
            yield f, ""


def printable(text: str) -> str:
    """``text`` for one line of human output: control characters and unpaired surrogates
    escaped, so a file name cannot forge lines or columns (a newline, a tab)."""
    out = []
    for ch in str(text):
        cp = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif cp < 0x20 or 0x7F <= cp < 0xA0 or 0xD800 <= cp < 0xE000 or ch in "\u2028\u2029":
            out.append(repr(ch)[1:-1] if cp < 0x10000 and ch.isascii() else f"\\u{cp:04x}")
        else:
            out.append(ch)
    return "".join(out)
