"""The camera indicator: on exactly while the main job's camera (frame source) is open."""

from __future__ import annotations

import signal

import pytest

from edge_app.cli import build_parser
from edge_app.config import IndicatorConfig
from edge_app.device.indicator import (FileIndicator, GpiochipIndicator, IndicatorError, NullIndicator, SysfsIndicator, lit,
                                open_indicator)
from edge_app.frames.sources import SourceError
from edge_app.frames.sources.synthetic import SyntheticSource, sample_head




def level(path) -> str:
    return path.read_text().strip()


def test_file_indicator_writes_one_and_zero(tmp_path):
    path = tmp_path / "led"
    ind = open_indicator(IndicatorConfig(kind="file", path=str(path)))
    assert isinstance(ind, FileIndicator) and level(path) == "0" and not ind.is_on  # off from the start
    ind.on()
    assert level(path) == "1" and ind.is_on
    ind.off()
    assert level(path) == "0"
    ind.on()
    ind.close()
    assert level(path) == "0"


def test_active_low_inverts_the_level(tmp_path):
    path = tmp_path / "led"
    ind = open_indicator(IndicatorConfig(kind="file", path=str(path), active_high=False))
    assert level(path) == "1"
    ind.on()
    assert level(path) == "0"
    ind.close()
    assert level(path) == "1"


def test_lit_switches_off_when_the_block_fails(tmp_path):
    path = tmp_path / "led"
    ind = FileIndicator(path)
    with pytest.raises(RuntimeError):
        with lit(ind):
            assert level(path) == "1"
            raise RuntimeError("camera exploded")
    assert level(path) == "0"


def test_bad_outputs_are_named(tmp_path):
    with pytest.raises(IndicatorError, match="does not exist"):
        open_indicator(IndicatorConfig(kind="file", path=str(tmp_path / "no" / "led")))
    with pytest.raises(IndicatorError, match="GPIO 17"):
        SysfsIndicator(17, root=tmp_path)  # no kernel behind this "sysfs": export creates nothing


def test_none_is_a_no_op():
    ind = open_indicator(IndicatorConfig())
    assert isinstance(ind, NullIndicator)
    ind.on()
    ind.off()
    ind.close()


def test_sysfs_indicator_drives_an_exported_gpio(tmp_path):
    gpio = tmp_path / "gpio17"
    gpio.mkdir()
    for name in ("direction", "value"):
        (gpio / name).write_text("in\n" if name == "direction" else "0\n")
    ind = SysfsIndicator(17, root=tmp_path)
    assert level(gpio / "direction") == "low"  # output, initially off, in one write
    ind.on()
    assert level(gpio / "value") == "1"
    ind.close()
    assert level(gpio / "value") == "0"
    assert not (tmp_path / "unexport").exists()  # it was exported before us: left exported


def test_gpiochip_without_gpiod_says_what_to_install():
    try:
        import gpiod  # noqa: F401
    except ImportError:
        with pytest.raises(IndicatorError, match="python3-libgpiod"):
            GpiochipIndicator("gpiochip0", 17)
    else:
        pytest.skip("gpiod is installed here; the hardware path is exercised on a Pi")


def test_config_requires_a_line_or_path(tmp_path):
    from edge_app.config import ConfigError, load_config

    cfg = tmp_path / "c.toml"
    cfg.write_text('[indicator]\nkind = "gpiochip"\n')
    with pytest.raises(ConfigError, match="indicator.line"):
        load_config(cfg)
    cfg.write_text('[indicator]\nkind = "file"\n')
    with pytest.raises(ConfigError, match="indicator.path"):
        load_config(cfg)
    cfg.write_text('[indicator]\nkind = "laser"\n')
    with pytest.raises(ConfigError, match="indicator.kind"):
        load_config(cfg)


# -- wired into the main job ------------------------------------------------------------------
class RecordingSource:
    """Synthetic frames; records the indicator level at open, every read and close."""

    name = "recording"

    def __init__(self, led, frames=6, explode_at=0) -> None:
        self.led = led
        self.inner = SyntheticSource(face=sample_head(), frames=frames)
        self.explode_at = explode_at
        self.levels = {"open": level(led), "reads": [], "close": None}
        self.reads = 0

    def read(self):
        self.reads += 1
        self.levels["reads"].append(level(self.led))
        if self.reads == self.explode_at:
            raise MemoryError("libcamera went away")  # not a SourceError: escapes the loop
        return self.inner.read()

    def close(self) -> None:
        self.levels["close"] = level(self.led)


@pytest.fixture
def main_job(tmp_path, monkeypatch):
    """Run ``edge-app run`` in-process with a file indicator and a given source."""
    import edge_app.commands.run as run_cmd

    led = tmp_path / "led"
    config = tmp_path / "config.toml"
    config.write_text(f'state_dir = "{tmp_path / "state"}"\n[indicator]\nkind = "file"\npath = "{led}"\n')
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}

    def run(make_source):
        monkeypatch.setattr(run_cmd, "open_source", lambda cfg: make_source(led))
        args = build_parser().parse_args(["run", "-c", str(config), "--no-mqtt"])
        return args.func(args)

    yield run, led
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


def test_indicator_is_on_exactly_while_the_camera_runs(main_job):
    run, led = main_job
    sources = []

    def make(led_path):
        sources.append(RecordingSource(led_path))
        return sources[0]

    assert run(make) == 0
    levels = sources[0].levels
    assert levels["open"] == "1"  # on before the camera starts capturing
    assert levels["reads"] and set(levels["reads"]) == {"1"}
    assert levels["close"] == "1"  # still on until the camera is closed
    assert level(led) == "0"  # and off afterwards


def test_indicator_goes_off_when_capture_errors_out(main_job):
    run, led = main_job
    with pytest.raises(MemoryError):
        run(lambda led_path: RecordingSource(led_path, frames=10, explode_at=3))
    assert level(led) == "0"


def test_indicator_goes_off_when_the_camera_cannot_open(main_job):
    run, led = main_job

    def broken(led_path):
        assert level(led_path) == "1"
        raise SourceError("picamera2:0: camera could not be started (no cameras available)")

    assert run(broken) == 3
    assert level(led) == "0"


def test_an_unusable_indicator_stops_the_job_before_the_camera(tmp_path, monkeypatch):
    import edge_app.commands.run as run_cmd

    opened = []
    monkeypatch.setattr(run_cmd, "open_source", lambda cfg: opened.append(cfg))
    config = tmp_path / "config.toml"
    config.write_text(f'state_dir = "{tmp_path / "state"}"\n'
                      f'[indicator]\nkind = "file"\npath = "{tmp_path / "missing" / "led"}"\n')
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        args = build_parser().parse_args(["run", "-c", str(config), "--no-mqtt"])
        assert args.func(args) == 4
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert not opened  # no capture without the indicator the operator asked for
