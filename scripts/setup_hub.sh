#!/usr/bin/env bash
# A pinned Home Assistant core in its own venv (.hub/venv), for `make test-hub` only: never part
# of `make test` or CI. Idempotent: a second run only checks.
#
# Home Assistant 2024.3.3 is the newest release that runs on Python 3.11 (2024.4 needs 3.12), and
# 3.11 is what Debian bookworm, the Pi and this project's CI machines have. It has everything the
# test needs: MQTT event entities (2023.8), has_entity_name naming, device serial_number.
# Another pair: HA_VERSION=... HUB_PYTHON=python3.13 scripts/setup_hub.sh (untested here).
#
# pip is given Home Assistant's own package_constraints.txt (from the wheel itself): without it
# pip's resolver wanders through hundreds of versions. The requirements of the integrations
# Home Assistant always sets up and of those the test configures (mqtt, http, onboarding, ...)
# are read from their manifests and installed here too, so Home Assistant runs with --skip-pip
# and never installs anything while the test runs.
set -euo pipefail
cd "$(dirname "$0")/.."
HA_VERSION="${HA_VERSION:-2024.3.3}"
HUB_PYTHON="${HUB_PYTHON:-python3.11}"
HUB=.hub
VENV="$HUB/venv"
# what tests/hub's configuration loads, besides the ones Home Assistant always sets up
INTEGRATIONS="mqtt http api config onboarding auth person automation counter logger"
# A pin Home Assistant's constraints lack for this old release: josepy 2 (2025) removed what
# acme, and so the cloud integration, imports.
EXTRA_CONSTRAINTS="josepy<2"
STAMP="$VENV/.installed-$HA_VERSION-3"  # bump the suffix when this script installs something new

if [ -f "$STAMP" ]; then
  exit 0
fi
if ! command -v "$HUB_PYTHON" >/dev/null 2>&1; then
  echo "setup_hub: $HUB_PYTHON not found (HUB_PYTHON=... names another interpreter)" >&2
  exit 2
fi
echo "setup_hub: Home Assistant $HA_VERSION on $("$HUB_PYTHON" --version) into $VENV (a few minutes)"
rm -rf "$VENV"
mkdir -p "$HUB/wheels"
"$HUB_PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip wheel
"$VENV/bin/python" -m pip download -q --no-deps -d "$HUB/wheels" "homeassistant==$HA_VERSION"
wheel=$(ls "$HUB"/wheels/homeassistant-"$HA_VERSION"-*.whl)
"$VENV/bin/python" -c '
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    open(sys.argv[2], "wb").write(z.read("homeassistant/package_constraints.txt"))
' "$wheel" "$HUB/constraints.txt"
printf '\n# added by scripts/setup_hub.sh\n%s\n' $EXTRA_CONSTRAINTS >> "$HUB/constraints.txt"
"$VENV/bin/python" -m pip install -q -c "$HUB/constraints.txt" "$wheel"

# the integrations' own requirements, following their dependencies, as Home Assistant would
"$VENV/bin/python" -c '
import json, sys
from pathlib import Path
import homeassistant.components as components
from homeassistant import bootstrap

root = Path(components.__file__).parent
# set up whatever the configuration says (without frontend Home Assistant falls into recovery mode)
always = set().union(*(getattr(bootstrap, name, set()) for name in (
    "CORE_INTEGRATIONS", "LOGGING_INTEGRATIONS", "FRONTEND_INTEGRATIONS", "DEFAULT_INTEGRATIONS")))
todo, seen, reqs = sorted(always) + sys.argv[1:], set(), set()
while todo:
    name = todo.pop()
    if name in seen or not (root / name / "manifest.json").is_file():
        continue
    seen.add(name)
    manifest = json.loads((root / name / "manifest.json").read_text())
    reqs.update(manifest.get("requirements", []))
    todo += manifest.get("dependencies", []) + manifest.get("after_dependencies", [])
    if name == "mqtt":  # MQTT sets up every entity platform it has (camera needs PyTurboJPEG, numpy)
        todo += [f.stem for f in (root / name).glob("*.py") if (root / f.stem / "manifest.json").is_file()]
print("\n".join(sorted(reqs)))
' $INTEGRATIONS > "$HUB/integration-requirements.txt"
echo "setup_hub: integration requirements: $(tr '\n' ' ' < "$HUB/integration-requirements.txt")"
if [ -s "$HUB/integration-requirements.txt" ]; then
  "$VENV/bin/python" -m pip install -q -c "$HUB/constraints.txt" -r "$HUB/integration-requirements.txt"
fi
touch "$STAMP"
echo "setup_hub: done"
