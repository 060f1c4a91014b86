"""The Raspberry Pi camera through picamera2 (from the OS package python3-picamera2).

The main stream (full resolution) is where face crops and ELA come from; the low-res
stream is what the detector looks at, so detection costs little at any resolution.
"""

from __future__ import annotations

import logging
import time

from edge_app.config import SourceConfig
from edge_app.frames.sources import Frame, SourceError
from edge_app.frames.sources.picamera2_import import import_picamera2

log = logging.getLogger(__name__)


class PiCameraSource:
    def __init__(self, cfg: SourceConfig) -> None:
        # imported here: only a Pi has it; any failure is one line with its cause and fix
        Picamera2 = import_picamera2()
        self.name = f"picamera2:{cfg.camera_index}"
        try:
            self.cam = Picamera2(cfg.camera_index)
            config = self.cam.create_video_configuration(
                main={"size": (cfg.width, cfg.height), "format": "RGB888"},
                lores={"size": (cfg.lores_width, cfg.lores_height), "format": "YUV420"},
                buffer_count=4,
            )
            self.cam.configure(config)
            if cfg.fps > 0:
                self.cam.set_controls({"FrameRate": cfg.fps})
            self.cam.start()
        except Exception as exc:  # libcamera raises many kinds; all mean "no camera"
            cause = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SourceError(f"{self.name}: camera could not be started ({cause}); check `rpicam-hello --list-cameras`, "
                              "the ribbon cable, and that no other program holds the camera") from exc
        self.seq = 0

    def read(self) -> Frame | None:
        try:
            request = self.cam.capture_request()
            try:
                # picamera2's "RGB888" is BGR in memory order; flip to RGB
                main = request.make_array("main")[:, :, ::-1].copy()
                lores_yuv = request.make_array("lores")
            finally:
                request.release()
        except Exception as exc:
            raise SourceError(f"{self.name}: capture failed ({exc})") from exc
        self.seq += 1
        h = lores_yuv.shape[0] * 2 // 3
        grey = lores_yuv[:h]
        lores = grey[:, :, None].repeat(3, axis=2)  # the detector only needs luminance structure
        return Frame(rgb=main, seq=self.seq, captured_at=time.monotonic(), origin=self.name, lores=lores)

    def close(self) -> None:
        try:
            self.cam.stop()
            self.cam.close()
        except Exception:  # closing a camera that already failed must not mask the first error
            log.debug("camera close failed", exc_info=True)


def open_source(cfg: SourceConfig) -> PiCameraSource:
    return PiCameraSource(cfg)
