#!/usr/bin/env bash
# A pinned Home Assistant core in its own venv (.hub/venv), for `make test-hub` only: never part
# of `make test` or CI. Idempotent: a second run only checks.
#
# Home Assistant 2024.3.3 is the newest release that runs on Python 3.11 (2024.4 needs 3.12), and
# 3.11 is what Debian bookworm, the Pi and this project's CI machines have. It has everything the
# test needs: MQTT event entities (2023.8), has_entity_name naming, device serial_number.
# Override with HA_VERSION=... HUB_PYTHON=python3.13 for a newer pair.
#
# pip is given Home Assistant's own package_constraints.txt (from the wheel itself): without it
# pip's resolver wanders through hundreds of versions. The requirements of the integrations the
# test loads (mqtt, http, onboarding, ...) are read from their manifests and installed here too,
# so Home Assistant never has to pip-install anything while it starts.
set -euo pipefail
cd "$(dirname "$0")/.."
HA_VERSION="${HA_VERSION:-2024.3.3}"
HUB_PYTHON="${HUB_PYTHON:-python3.11}"
HUB=.hub
VENV="$HUB/venv"
# what tests/hub/test_home_assistant.py's configuration loads
INTEGRATIONS="mqtt http api config onboarding auth person automation counter logger"

if [ -f "$VENV/.installed-$HA_VERSION" ]; then
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
"$VENV/bin/python" - "$wheel" "$HUB/constraints.txt" <<'EOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    open(sys.argv[2], "wb").write(z.read("homeassistant/package_constraints.txt"))
EOF
"$VENV/bin/python" -m pip install -q -c "$HUB/constraints.txt" "$wheel"
# the integrations' own requirements, with their dependencies, as Home Assistant would install them
"$VENV/bin/python" - $INTEGRATIONS > "$HUB/integration-requirements.txt" <<'EOF'
import json, sys
from pathlib import Path
import homeassistant.components as components

root = Path(components.__file__).parent
todo, seen, reqs = list(sys.argv[1:]), set(), set()
while todo:
    name = todo.pop()
    if name in seen or not (root / name / "manifest.json").is_file():
        continue
    seen.add(name)
    manifest = json.loads((root / name / "manifest.json").read_text())
    reqs.update(manifest.get("requirements", []))
    todo += manifest.get("dependencies", []) + manifest.get("after_dependencies", [])
print("\n".join(sorted(reqs)))
EOF
echo "setup_hub: integration requirements: $(tr '\n' ' ' < "$HUB/integration-requirements.txt")"
if [ -s "$HUB/integration-requirements.txt" ]; then
  "$VENV/bin/python" -m pip install -q -c "$HUB/constraints.txt" -r "$HUB/integration-requirements.txt"
fi
touch "$VENV/.installed-$HA_VERSION"
echo "setup_hub: done"
