"""A real Home Assistant core (installed by scripts/setup_hub.sh into .hub/venv) on loopback, and
the edge-app process, for the opt-in hub test. Standard library only on this side: Home
Assistant is reached through its REST API, as any client would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[2]
HUB_VENV = REPO / ".hub" / "venv"
EDGE_APP = REPO / ".venv" / "bin" / "edge-app"
DECISIONS = ("live", "attack", "uncertain", "no_face", "error")

CONFIGURATION = """\
homeassistant:
  name: edge_app hub test
  latitude: 0
  longitude: 0
  elevation: 0
  unit_system: metric
  time_zone: UTC
  currency: EUR
  country: DE
http:
  server_host: 127.0.0.1
  server_port: {port}
api:
config:
onboarding:
logger:
  default: info
counter:
{counters}
automation:
  # what the event entity is for: an automation that runs on every decision
  - id: count_decision_events
    alias: count decision events
    mode: queued
    max: 10000
    trigger:
      - platform: state
        entity_id: event.door1_decision_event
    condition:
      - "{{{{ trigger.from_state is not none and trigger.from_state.state != 'unavailable'
             and trigger.to_state.state not in ('unavailable', 'unknown') }}}}"
    action:
      - service: counter.increment
        target:
          entity_id: "counter.event_{{{{ trigger.to_state.attributes.event_type }}}}"
  # what a state trigger on the Decision sensor sees, for comparison
  - id: count_decision_states
    alias: count decision state changes
    mode: queued
    max: 10000
    trigger:
      - platform: state
        entity_id: sensor.door1_decision
    condition:
      - "{{{{ trigger.from_state is not none and trigger.from_state.state != 'unavailable'
             and trigger.to_state.state in {decisions} }}}}"
    action:
      - service: counter.increment
        target:
          entity_id: "counter.state_{{{{ trigger.to_state.state }}}}"
"""


def wait_until(what: str, predicate: Callable[[], Any], timeout: float, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


class HomeAssistant:
    def __init__(self, config_dir: Path, port: int) -> None:
        self.dir = Path(config_dir)
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.token: str | None = None
        self.proc: subprocess.Popen | None = None
        self.dir.mkdir(parents=True, exist_ok=True)
        counters = "\n".join(f"  {kind}_{d}:\n    initial: 0" for kind in ("event", "state") for d in DECISIONS)
        (self.dir / "configuration.yaml").write_text(
            CONFIGURATION.format(port=port, counters=counters, decisions=list(DECISIONS)))

    @property
    def log_path(self) -> Path:
        return self.dir / "home-assistant.log"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def start(self, timeout: float = 180.0) -> float:
        """Start hass and wait for its HTTP API; returns the seconds it took."""
        hass = HUB_VENV / "bin" / "hass"
        if not hass.exists():
            raise AssertionError(f"{hass} missing: run scripts/setup_hub.sh (make test-hub does)")
        t0 = time.monotonic()
        # --skip-pip: everything was installed by setup_hub.sh; nothing is fetched while testing
        self.proc = subprocess.Popen([str(hass), "-c", str(self.dir), "--skip-pip"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"hass exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                with urllib.request.urlopen(self.url + "/api/onboarding", timeout=2) as r:
                    return r.status == 200
            except (urllib.error.URLError, OSError):
                return False

        wait_until("Home Assistant's HTTP API", up, timeout, interval=0.5)
        # the API answers before every integration is set up: wait for the "started" state
        if self.token:
            wait_until("Home Assistant to finish starting",
                       lambda: self.get("/api/config").get("state") == "RUNNING", timeout)
        return time.monotonic() - t0

    def stop(self, timeout: float = 60.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    # -- REST --------------------------------------------------------------------------------
    def request(self, method: str, path: str, body: Any = None, *, form: dict | None = None,
                auth: bool = True) -> Any:
        headers = {}
        data = None
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if auth:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                text = r.read().decode()
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{method} {path}: HTTP {exc.code}: {exc.read().decode(errors='replace')}") from None
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, body if body is not None else {})

    def onboard(self) -> None:
        """Create the owner through onboarding and log in: the access token for the REST API."""
        client_id = self.url + "/"
        code = self.request("POST", "/api/onboarding/users", {
            "client_id": client_id, "name": "Test", "username": "test", "password": "test-password-1",
            "language": "en"}, auth=False)["auth_code"]
        tokens = self.request("POST", "/auth/token", form={
            "grant_type": "authorization_code", "code": code, "client_id": client_id}, auth=False)
        self.token = tokens["access_token"]

    def setup_mqtt(self, broker_port: int) -> dict:
        """The MQTT integration through its config flow, as the UI does it."""
        flow = self.post("/api/config/config_entries/flow", {"handler": "mqtt", "show_advanced_options": False})
        assert flow.get("type") == "form" and flow.get("step_id") == "broker", flow
        result = self.post(f"/api/config/config_entries/flow/{flow['flow_id']}",
                           {"broker": "127.0.0.1", "port": broker_port})
        assert result.get("type") == "create_entry", result
        return result

    def state(self, entity_id: str) -> dict | None:
        try:
            return self.get(f"/api/states/{entity_id}")
        except AssertionError as exc:
            if "HTTP 404" in str(exc):
                return None
            raise

    def states(self, prefix: str = "") -> dict[str, dict]:
        return {s["entity_id"]: s for s in self.get("/api/states") if s["entity_id"].startswith(prefix)}

    def template(self, template: str) -> str:
        return self.post("/api/template", {"template": template})


class EdgeApp:
    """`edge-app run` on the built-in sample, as a separate process."""

    def __init__(self, workdir: Path, broker_port: int, device_id: str = "door1") -> None:
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config = self.dir / "config.toml"
        self.config.write_text(
            f'device_id = "{device_id}"\nstate_dir = "{self.dir / "state"}"\n'
            '[source]\nkind = "sample"\nfps = 16.0\n'
            f'[mqtt]\nhost = "127.0.0.1"\nport = {broker_port}\nhealth_interval_s = 2.0\n'
            'discovery_area = "Front door"\n')
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = open(self.dir / f"edge-app-{self.starts}.log", "wb")
        self.proc = subprocess.Popen([str(EDGE_APP), "run", "-c", str(self.config)], stdout=log,
                                     stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        log.close()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        proc, self.proc = self.proc, None
        if proc is None:
            return 0
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()
