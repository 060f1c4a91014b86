"""Images from a directory, a single file or a glob, once or looped."""

from __future__ import annotations

import glob
import logging
import time
from pathlib import Path


from edge_app.config import SourceConfig
from edge_app.images import ImageLoadError, IMAGE_SUFFIXES, load_rgb
from edge_app.frames.sources import Frame, Pacer, SourceError

log = logging.getLogger(__name__)


def list_images(spec: str) -> list[Path]:
    """Image files named by a directory, a file or a glob pattern, sorted."""
    path = Path(spec)
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if path.is_file():
        return [path]
    return sorted(Path(p) for p in glob.glob(spec) if Path(p).suffix.lower() in IMAGE_SUFFIXES)


class FileSource:
    def __init__(self, paths: list[Path], loop: bool, fps: float, name: str) -> None:
        self.paths, self.loop, self.name = paths, loop, name
        self.index = 0
        self.seq = 0
        self.pacer = Pacer(fps)

    def read(self) -> Frame | None:
        if self.index >= len(self.paths):
            if not self.loop:
                return None
            self.index = 0
        path = self.paths[self.index]
        self.index += 1
        self.pacer.wait()
        self.seq += 1
        try:
            rgb = load_rgb(path)
        except ImageLoadError as exc:
            # a bad file is reported as a failed frame; the loop goes on to the next one
            raise SourceError(str(exc)) from None
        return Frame(rgb=rgb, seq=self.seq, captured_at=time.monotonic(), origin=str(path))

    def close(self) -> None:
        pass


def open_source(cfg: SourceConfig) -> FileSource:
    if not cfg.path:
        raise SourceError("source.path: the files source needs a directory, file or glob")
    try:
        paths = list_images(cfg.path)
    except OSError as exc:  # an unreadable folder is not "no images"
        raise SourceError(f"{cfg.path}: cannot be read ({exc.strerror or exc})") from None
    if not paths:
        raise SourceError(f"{cfg.path}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    log.info("files source: %d images from %s%s", len(paths), cfg.path, " (looped)" if cfg.loop else "")
    return FileSource(paths, cfg.loop, cfg.fps, f"files:{cfg.path}")
