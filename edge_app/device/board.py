"""Facts about the board the terminal runs on: its CPU temperature and its serial number."""

from __future__ import annotations

import re
from pathlib import Path

CPU_TEMP_PATH = "/sys/class/thermal/thermal_zone0/temp"
SERIAL_PATHS = ("/sys/firmware/devicetree/base/serial-number", "/proc/cpuinfo")


def read_serial_number(paths: tuple[str, ...] = SERIAL_PATHS) -> str | None:
    """The board's serial number (a Raspberry Pi's, from the device tree or /proc/cpuinfo), or None."""
    for path in paths:
        try:
            text = Path(path).read_text(errors="replace")
        except OSError:
            continue
        if path.endswith("cpuinfo"):
            match = re.search(r"^Serial\s*:\s*([0-9A-Fa-f]+)\s*$", text, re.M)
            text = match.group(1) if match else ""
        serial = text.strip("\x00 \n")
        if serial and set(serial) != {"0"}:
            return serial
    return None


def read_cpu_temp_c(path: str = CPU_TEMP_PATH) -> float | None:
    """CPU temperature in °C from the thermal zone (millidegrees), or None where unreadable."""
    try:
        return round(int(Path(path).read_text().strip()) / 1000.0, 1)
    except (OSError, ValueError):
        return None
