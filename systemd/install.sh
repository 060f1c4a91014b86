#!/usr/bin/env bash
# Install edge-app as a systemd service on Raspberry Pi OS (bookworm: Python 3.11, trixie: 3.13).
#
#   sudo systemd/install.sh [--root DIR] [--no-apt] [--no-systemctl] [--no-user] [--start]
#                           [--models DIR] [--python PY] [--pip-args "ARGS"] [--wheel FILE] [--no-pip]
#
# What it does, each step only when needed (a second run changes nothing):
#   1. apt: python3-picamera2, python3-libgpiod, python3-venv, mosquitto-clients
#   2. the system user edge-app (groups video, and gpio where it exists)
#   3. a venv in /opt/edge-app/venv with --system-site-packages (so picamera2 and gpiod from
#      the OS are importable) and this package installed into it (again only when the source
#      changed: its sha256 is kept in /opt/edge-app/.source-sha256); --wheel FILE installs a
#      wheel built elsewhere instead, --no-pip leaves the venv's packages alone
#   4. the models into /opt/edge-app/models (a missing face detector is fetched by sha256)
#   5. /etc/edge-app/config.toml from systemd/config.example.toml -- only if there is none:
#      an edited config is never overwritten; the current example is kept beside it
#   6. /etc/systemd/system/edge-app.service, daemon-reload when it changed, enable
#
# --root DIR installs into DIR instead of / (tests, image staging): apt, useradd and the
# live systemctl are then skipped; enabling is done with `systemctl --root` when available.
# A venv made under --root keeps absolute paths into DIR: use it for checks, not for copying.
# Environment equivalents: EDGE_APP_ROOT, EDGE_APP_NO_APT=1, EDGE_APP_NO_SYSTEMCTL=1.
set -euo pipefail

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROOT="${EDGE_APP_ROOT:-/}"
NO_APT="${EDGE_APP_NO_APT:-0}"
NO_SYSTEMCTL="${EDGE_APP_NO_SYSTEMCTL:-0}"
NO_USER=0
START=0
MODELS_SRC="$SRC/models"
PYTHON="${EDGE_APP_PYTHON:-/usr/bin/python3}"
PIP_ARGS=""
WHEEL=""
NO_PIP=0
USER_NAME=edge-app
APT_PACKAGES=(python3-picamera2 python3-libgpiod python3-venv mosquitto-clients libturbojpeg0)

usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --root) ROOT="$2"; shift 2 ;;
    --root=*) ROOT="${1#*=}"; shift ;;
    --no-apt) NO_APT=1; shift ;;
    --no-systemctl) NO_SYSTEMCTL=1; shift ;;
    --no-user) NO_USER=1; shift ;;
    --start) START=1; shift ;;
    --models) MODELS_SRC="$2"; shift 2 ;;
    --python) PYTHON="$2"; shift 2 ;;
    --pip-args) PIP_ARGS="$2"; shift 2 ;;
    --wheel) WHEEL="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"; shift 2 ;;
    --no-pip) NO_PIP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -x "$PYTHON" ] || PYTHON="$(command -v python3 || true)"
[ -n "$PYTHON" ] || { echo "install.sh: python3 not found" >&2; exit 1; }

ROOT="$(mkdir -p "$ROOT" && cd "$ROOT" && pwd)"
LIVE=0; [ "$ROOT" = "/" ] && LIVE=1
R="${ROOT%/}"                      # prefix for every path written ("" on a live system)
PREFIX="$R/opt/edge-app"
ETC="$R/etc/edge-app"
UNIT_DIR="$R/etc/systemd/system"
CHANGES=0

say() { echo "install: $*"; }
changed() { CHANGES=$((CHANGES + 1)); say "$*"; }

if [ "$LIVE" = 1 ] && [ "$(id -u)" -ne 0 ]; then
  echo "install.sh: run as root (sudo), or use --root DIR for a trial install" >&2; exit 1
fi
if [ -r /etc/os-release ]; then
  . /etc/os-release
  case "${VERSION_CODENAME:-}" in
    bookworm|trixie) ;;
    *) say "note: ${PRETTY_NAME:-this OS} is not Raspberry Pi OS bookworm/trixie; continuing" ;;
  esac
fi

# install_file SRC DST MODE: copy only when the content differs
install_file() {
  if [ -f "$2" ] && cmp -s "$1" "$2"; then
    return 0
  fi
  install -D -m "$3" "$1" "$2"
  changed "wrote $2"
}

# 1. OS packages
if [ "$LIVE" = 1 ] && [ "$NO_APT" != 1 ]; then
  missing=()
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    changed "apt installed ${missing[*]}"
  fi
else
  say "skipping apt (${APT_PACKAGES[*]})"
fi

# 2. the service user
if [ "$LIVE" = 1 ] && [ "$NO_USER" != 1 ]; then
  if ! id "$USER_NAME" >/dev/null 2>&1; then
    useradd --system --user-group --home-dir /var/lib/edge-app --no-create-home \
      --shell /usr/sbin/nologin --comment "edge-app liveness terminal" "$USER_NAME"
    changed "created user $USER_NAME"
  fi
  for group in video gpio; do
    if getent group "$group" >/dev/null && ! id -nG "$USER_NAME" | tr ' ' '\n' | grep -qx "$group"; then
      usermod -aG "$group" "$USER_NAME"
      changed "added $USER_NAME to group $group"
    fi
  done
else
  say "skipping user $USER_NAME (groups video, gpio)"
fi

# 3. venv and package
VENV="$PREFIX/venv"
if ! "$VENV/bin/python" -c "import sys" >/dev/null 2>&1; then
  rm -rf "$VENV"
  mkdir -p "$PREFIX"
  "$PYTHON" -m venv --system-site-packages "$VENV"
  changed "created venv $VENV ($("$VENV/bin/python" -V 2>&1), with system site-packages)"
fi
if [ -n "$WHEEL" ]; then
  src_sha="$(sha256sum "$WHEEL" | cut -c1-64)"
else
  src_sha="$(cd "$SRC" && find pyproject.toml README.md edge_app convert -type f \
               ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 2>/dev/null \
             | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-64)"
fi
# Keep the OS's numpy. picamera2's compiled helpers from apt (simplejpeg) are built against
# it; a newer numpy that pip put into the venv would shadow it and break the camera import
# ("numpy.dtype size changed"). So pip installs under a constraint pinning the numpy the
# system interpreter has, and every dependency must accept it (see pyproject.toml).
CONSTRAINTS="$PREFIX/pip-constraints.txt"
sys_numpy="$("$PYTHON" -I -c 'import numpy; print(numpy.__version__)' 2>/dev/null || true)"
if [ -n "$sys_numpy" ]; then
  mkdir -p "$PREFIX"
  want="# written by systemd/install.sh: keep the system's numpy (picamera2's apt modules need it)
numpy==$sys_numpy"
  if [ "$(cat "$CONSTRAINTS" 2>/dev/null)" != "$want" ]; then
    printf '%s\n' "$want" > "$CONSTRAINTS"
    changed "pip constraint numpy==$sys_numpy (the system's numpy) in $CONSTRAINTS"
  fi
  src_sha="$(printf '%s %s' "$src_sha" "$sys_numpy" | sha256sum | cut -c1-64)"
  CONSTRAINT_ARGS=(--constraint "$CONSTRAINTS")
else
  say "no numpy in $PYTHON's system packages: pip chooses numpy (python3-numpy keeps the OS's)"
  CONSTRAINT_ARGS=()
fi
if [ "$NO_PIP" = 1 ]; then
  say "skipping pip (--no-pip)"
elif [ "$(cat "$PREFIX/.source-sha256" 2>/dev/null)" != "$src_sha" ] || [ ! -x "$VENV/bin/edge-app" ]; then
  if [ -n "$WHEEL" ]; then
    target="$WHEEL"
  else
    build="$(mktemp -d)"
    trap 'rm -rf "$build"' EXIT
    # build from a copy: pip writes build/ and *.egg-info next to the sources
    (cd "$SRC" && tar --exclude=__pycache__ --exclude='*.pyc' -cf - pyproject.toml README.md edge_app convert) \
      | tar -xf - -C "$build"
    target="$build"
  fi
  # shellcheck disable=SC2086  # PIP_ARGS is a list of options
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${CONSTRAINT_ARGS[@]}" $PIP_ARGS "$target"
  # an earlier install (before the constraint) may have left its own numpy in the venv,
  # shadowing the system's: remove that copy so the system's is imported again
  if [ -n "$sys_numpy" ]; then
    venv_numpy="$("$VENV/bin/python" -c 'import numpy; print(numpy.__version__, numpy.__file__)' 2>/dev/null || true)"
    case "$venv_numpy" in
      *" $VENV/"*)
        "$VENV/bin/python" -m pip uninstall --quiet --disable-pip-version-check -y numpy
        changed "removed the venv's own numpy ${venv_numpy%% *}: the system's $sys_numpy is used" ;;
    esac
  fi
  echo "$src_sha" > "$PREFIX/.source-sha256"
  changed "installed edge_app into $VENV"
fi
numpy_now="$("$VENV/bin/python" -c 'import numpy; print(numpy.__version__, "from", numpy.__file__)' 2>/dev/null || echo "not importable")"
say "numpy in the venv: $numpy_now"

# 4. models
need_detector=0
for det in face_detection_short_range face_detection_full_range; do
  [ -f "$MODELS_SRC/$det.tflite" ] || [ -f "$PREFIX/models/$det.tflite" ] || need_detector=1
done
if [ "$need_detector" = 1 ]; then
  [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import convert.fetch_detector" 2>/dev/null \
    || { echo "install.sh: no face detector in $MODELS_SRC and none installed: run" \
              "python -m convert.fetch_detector there, or pass --models DIR" >&2; exit 1; }
  say "fetching the face detectors (pinned mediapipe wheel, checked by sha256)"
  "$VENV/bin/python" -m convert.fetch_detector --models-dir "$PREFIX/models"
  changed "fetched the face detector into $PREFIX/models"
fi
shopt -s nullglob
for f in "$MODELS_SRC"/*.tflite "$MODELS_SRC"/*.json; do
  install_file "$f" "$PREFIX/models/$(basename "$f")" 0644
done
shopt -u nullglob

# docs beside the install
install_file "$SRC/systemd/README.md" "$PREFIX/share/README.md" 0644
install_file "$SRC/docs/privacy.md" "$PREFIX/share/privacy.md" 0644

# 5. config: never overwrite an existing one
mkdir -p "$ETC"
chmod 0750 "$ETC"
install_file "$SRC/systemd/config.example.toml" "$ETC/config.example.toml" 0644
if [ ! -e "$ETC/config.toml" ]; then
  install -m 0640 "$SRC/systemd/config.example.toml" "$ETC/config.toml"
  changed "wrote $ETC/config.toml (edit it: mqtt.host, device_id)"
elif ! cmp -s "$SRC/systemd/config.example.toml" "$ETC/config.toml"; then
  say "kept $ETC/config.toml (edited; the current example is $ETC/config.example.toml)"
fi
if [ "$LIVE" = 1 ] && id "$USER_NAME" >/dev/null 2>&1; then
  # root owns the config, the service may read it (and a password file beside it)
  if [ "$(stat -c %G "$ETC")" != "$USER_NAME" ] || [ "$(stat -c %G "$ETC/config.toml")" != "$USER_NAME" ]; then
    chgrp "$USER_NAME" "$ETC" "$ETC/config.toml"
    changed "gave group $USER_NAME read access to $ETC"
  fi
fi

# 6. the unit
unit_before="$(sha256sum "$UNIT_DIR/edge-app.service" 2>/dev/null || true)"
install_file "$SRC/systemd/edge-app.service" "$UNIT_DIR/edge-app.service" 0644
unit_after="$(sha256sum "$UNIT_DIR/edge-app.service")"
if [ "$NO_SYSTEMCTL" = 1 ] || ! command -v systemctl >/dev/null 2>&1; then
  say "skipping systemctl (enable edge-app.service yourself)"
elif [ "$LIVE" = 1 ]; then
  [ "$unit_before" != "$unit_after" ] && { systemctl daemon-reload; say "systemd reloaded"; }
  if ! systemctl is-enabled --quiet edge-app.service; then
    systemctl enable edge-app.service
    changed "enabled edge-app.service"
  fi
  if [ "$START" = 1 ]; then
    systemctl restart edge-app.service
    say "started edge-app.service"
  fi
else
  # offline: enabling is only a symlink, systemctl --root makes it without a running systemd
  if [ ! -L "$UNIT_DIR/multi-user.target.wants/edge-app.service" ]; then
    systemctl --root="$ROOT" enable edge-app.service >/dev/null 2>&1 \
      && changed "enabled edge-app.service under $ROOT" \
      || say "could not enable under $ROOT (systemctl --root failed)"
  fi
fi

if [ "$CHANGES" = 0 ]; then
  say "nothing to do: already installed"
else
  say "$CHANGES change(s)"
fi
say "next: edit $ETC/config.toml, then: sudo -u $USER_NAME $VENV/bin/edge-app doctor -c /etc/edge-app/config.toml"
say "      sudo systemctl start edge-app; journalctl -u edge-app -f"
