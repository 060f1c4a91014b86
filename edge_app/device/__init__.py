"""What the terminal does on its own hardware besides deciding: the camera-active indicator,
systemd's notify protocol (readiness and watchdog), and privacy-redacted review snapshots."""
