"""edge_app: face-liveness terminal for the Raspberry Pi."""

__version__ = "0.1.0"
