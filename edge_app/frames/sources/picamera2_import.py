"""Importing picamera2, and when that fails, one line saying why and what fixes it.

picamera2 comes from the OS (apt's python3-picamera2) and imports compiled modules that
apt built against the OS's numpy (simplejpeg, numpy 1.24 on bookworm). In a venv made with
``--system-site-packages`` a newer numpy installed by pip shadows that one and the import
fails deep inside with ``ValueError: numpy.dtype size changed`` (or NumPy 2's "compiled
using NumPy 1.x" ImportError). The frame source and ``edge-app doctor`` both use
``import_picamera2`` so the service's log and the doctor say the same thing.
"""

from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path

from edge_app.frames.sources import SourceError

# where Debian and Raspberry Pi OS put the Python packages apt installs
SYSTEM_PACKAGE_DIRS = ("/usr/lib/python3/dist-packages",)

_NUMPY_ABI_SIGNS = ("numpy.dtype size changed", "compiled using NumPy 1.x", "numpy.core.multiarray failed to import",
                    "numpy.core._multiarray_umath", "binary incompatibility")


class CameraImportError(SourceError):
    """picamera2 cannot be imported; the message is one line with the cause and the fix."""


def system_numpy(dirs: tuple[str, ...] = SYSTEM_PACKAGE_DIRS) -> tuple[str, str] | None:
    """(version, folder) of the numpy the OS's packages were built against, if apt has one."""
    for folder in dirs:
        for dist in importlib.metadata.distributions(name="numpy", path=[folder]):
            return dist.version, folder
    return None


def loaded_numpy() -> tuple[str, str] | None:
    """(version, folder) of the numpy this process imports, or None if it has none."""
    try:
        import numpy
    except Exception:  # a broken numpy is reported by the caller's own error
        return None
    return numpy.__version__, str(Path(numpy.__file__).parent.parent)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def explain(exc: BaseException, system: tuple[str, str] | None = None,
            loaded: tuple[str, str] | None = None, prefix: str | None = None) -> str:
    """One line: why ``import picamera2`` failed and the fix. ``system`` and ``loaded`` default
    to what this machine has (see ``system_numpy`` and ``loaded_numpy``)."""
    system = system if system is not None else system_numpy()
    loaded = loaded if loaded is not None else loaded_numpy()
    prefix = prefix or sys.prefix
    cause = _first_line(exc)
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] == "picamera2":
        return ("picamera2 is not importable (not a Raspberry Pi, or python3-picamera2 not installed): on "
                "Raspberry Pi OS run `sudo apt install python3-picamera2` and use a venv made with "
                "--system-site-packages (systemd/install.sh does both)")
    if any(sign in str(exc) for sign in _NUMPY_ABI_SIGNS):
        found = f"numpy {loaded[0]} from {loaded[1]}" if loaded else "a numpy that does not import"
        if system:
            expected = f"the system's numpy {system[0]} ({system[1]}) that apt's picamera2 modules (simplejpeg) are built for"
            if loaded and loaded[1].startswith(prefix.rstrip("/") + "/"):
                fix = (f"remove the venv's own numpy (`{prefix}/bin/pip uninstall numpy`) or re-run "
                       f"systemd/install.sh, which pins numpy=={system[0]}")
            else:
                fix = f"make numpy {system[0]} the one imported (remove the other copy, or re-run systemd/install.sh)"
        else:
            expected = "the numpy that picamera2's compiled modules were built for"
            fix = "install apt's numpy (`sudo apt install python3-numpy`) and re-run systemd/install.sh"
        return f"picamera2 cannot be imported, numpy mismatch ({cause}): found {found}, expected {expected}; fix: {fix}"
    return (f"picamera2 cannot be imported ({cause}); fix: `sudo apt install --reinstall python3-picamera2 "
            "python3-libcamera` and check `python3 -c 'import picamera2'` outside the venv")


def import_picamera2():
    """The ``Picamera2`` class; raises CameraImportError (one line, cause and fix) otherwise."""
    try:
        from picamera2 import Picamera2
    except Exception as exc:  # ImportError, numpy's ValueError, libcamera's OSError/RuntimeError ...
        raise CameraImportError(explain(exc)) from exc
    return Picamera2
