#!/usr/bin/env python3
"""ELA and wavelet-residual benchmark; the same as ``edge-app bench ela``."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # a fresh clone without installing

from edge_app.bench.ela import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
