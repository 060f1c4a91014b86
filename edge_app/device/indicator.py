"""The camera-active indicator: an output that is on exactly while the camera captures.

Kinds (``[indicator] kind``):

- ``none``: no output (the default; off a Pi there is nothing to light).
- ``gpiochip``: a GPIO line through the kernel's GPIO character device (``/dev/gpiochipN``)
  with the ``gpiod`` module (Raspberry Pi OS: ``apt install python3-libgpiod``; libgpiod
  1.x on bookworm and 2.x on trixie both work). The line is held while the app runs.
- ``sysfs``: the legacy ``/sys/class/gpio`` interface (GPIO number, not line offset).
- ``file``: writes ``1``/``0`` to a file, e.g. an LED's ``/sys/class/leds/<led>/brightness``
  (on a Pi the power or activity LED can serve), or any file a test reads.

The run command switches it on before the camera opens and off after the camera is closed,
in a ``finally``, so it is on for the whole capture, including when capture errors out.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Protocol

from edge_app.config import IndicatorConfig

log = logging.getLogger(__name__)

CONSUMER = "edge-app camera indicator"


class IndicatorError(RuntimeError):
    """The indicator output cannot be driven; the message names the output and why."""


class Indicator(Protocol):
    name: str
    is_on: bool

    def on(self) -> None: ...

    def off(self) -> None: ...

    def close(self) -> None: ...


class _Base:
    name = "none"

    def __init__(self, active_high: bool = True) -> None:
        self.active_high = active_high
        self.is_on = False

    def _write(self, level: int) -> None:  # physical level: 1 high, 0 low
        pass

    def _set(self, on: bool) -> None:
        self._write(int(on == self.active_high))
        self.is_on = on

    def on(self) -> None:
        """Switch on; raises IndicatorError when the output cannot be driven."""
        try:
            self._set(True)
        except IndicatorError:
            raise
        except Exception as exc:
            raise IndicatorError(f"indicator {self.name}: cannot switch on ({exc})") from exc

    def off(self) -> None:
        """Switch off; never raises (it runs in cleanup paths), logs instead."""
        try:
            self._set(False)
        except Exception as exc:
            log.error("indicator %s: cannot switch off (%s)", self.name, exc)

    def close(self) -> None:
        self.off()


class NullIndicator(_Base):
    name = "none"


class FileIndicator(_Base):
    def __init__(self, path: str | Path, active_high: bool = True) -> None:
        super().__init__(active_high)
        self.path = Path(path)
        self.name = f"file:{self.path}"
        if not self.path.parent.is_dir():
            raise IndicatorError(f"indicator.path {self.path}: folder {self.path.parent} does not exist")
        try:
            self._set(False)
        except OSError as exc:
            raise IndicatorError(f"indicator.path {self.path}: cannot write ({exc.strerror or exc})") from None

    def _write(self, level: int) -> None:
        with open(self.path, "w") as fh:
            fh.write(f"{level}\n")


class SysfsIndicator(_Base):
    def __init__(self, gpio: int, active_high: bool = True, root: str | Path = "/sys/class/gpio") -> None:
        super().__init__(active_high)
        self.root = Path(root)
        self.gpio = gpio
        self.name = f"sysfs:gpio{gpio}"
        self.dir = self.root / f"gpio{gpio}"
        self.exported = False
        try:
            if not self.dir.exists():
                (self.root / "export").write_text(str(gpio))
                self.exported = True
            # "low"/"high" set output direction and the initial level in one write, without a glitch
            (self.dir / "direction").write_text("low" if active_high else "high")
        except OSError as exc:
            raise IndicatorError(f"indicator sysfs GPIO {gpio} under {self.root}: {exc.strerror or exc} "
                                 "(on kernels 6.6+ sysfs GPIO numbers are offset: see /sys/kernel/debug/gpio, "
                                 "or use kind = \"gpiochip\")") from None

    def _write(self, level: int) -> None:
        (self.dir / "value").write_text(str(level))

    def close(self) -> None:
        self.off()
        if self.exported:
            try:
                (self.root / "unexport").write_text(str(self.gpio))
            except OSError:
                log.debug("unexport of gpio%d failed", self.gpio, exc_info=True)


class GpiochipIndicator(_Base):
    def __init__(self, chip: str, line: int, active_high: bool = True) -> None:
        super().__init__(active_high)
        try:
            import gpiod  # python3-libgpiod from the OS; only where it is installed
        except ImportError:
            raise IndicatorError("indicator.kind = \"gpiochip\" needs the gpiod module: on Raspberry Pi OS "
                                 "`apt install python3-libgpiod` (the venv must use --system-site-packages)") from None
        self._gpiod = gpiod
        self.path = chip if chip.startswith("/") else f"/dev/{chip}"
        self.line = line
        self.name = f"{self.path}:{line}"
        idle = 0 if active_high else 1
        try:
            if hasattr(gpiod, "request_lines"):  # libgpiod 2.x bindings
                from gpiod.line import Direction, Value

                self._values = (Value.INACTIVE, Value.ACTIVE)
                self._request = gpiod.request_lines(self.path, consumer=CONSUMER, config={
                    line: gpiod.LineSettings(direction=Direction.OUTPUT, output_value=self._values[idle])})
                self._v2 = True
            else:  # libgpiod 1.x bindings (bookworm)
                self._chip = gpiod.Chip(self.path)
                self._line = self._chip.get_line(line)
                self._line.request(consumer=CONSUMER, type=gpiod.LINE_REQ_DIR_OUT, default_vals=[idle])
                self._v2 = False
        except (OSError, ValueError) as exc:
            raise IndicatorError(f"indicator GPIO {self.name}: cannot request the line as output ({exc})") from None

    def _write(self, level: int) -> None:
        if self._v2:
            self._request.set_value(self.line, self._values[level])
        else:
            self._line.set_value(level)

    def close(self) -> None:
        self.off()
        try:
            if self._v2:
                self._request.release()
            else:
                self._line.release()
                self._chip.close()
        except Exception:
            log.debug("releasing %s failed", self.name, exc_info=True)


def open_indicator(cfg: IndicatorConfig) -> Indicator:
    """The configured indicator, switched off; raises IndicatorError when it cannot be driven."""
    if cfg.kind == "none":
        return NullIndicator()
    if cfg.kind == "file":
        return FileIndicator(cfg.path, cfg.active_high)
    if cfg.kind == "sysfs":
        return SysfsIndicator(cfg.line, cfg.active_high)
    if cfg.kind == "gpiochip":
        return GpiochipIndicator(cfg.chip, cfg.line, cfg.active_high)
    raise IndicatorError(f"indicator.kind {cfg.kind!r} is not one of none, gpiochip, sysfs, file")


@contextmanager
def lit(indicator: Indicator) -> Iterator[Indicator]:
    """On for the duration of the block, off afterwards whatever happens in it."""
    indicator.on()
    try:
        yield indicator
    finally:
        indicator.off()
