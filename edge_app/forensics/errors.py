"""The error every still-image forensics step raises for an input it cannot analyse."""

from __future__ import annotations


class ForensicsError(ValueError):
    """An input that cannot be analysed; the message says which and why."""
