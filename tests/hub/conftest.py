"""The hub test imports tests/broker.py (the real Mosquitto) beside its own helpers."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
