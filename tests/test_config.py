import pytest

from edge_app.config import ConfigError, load_config


def write(tmp_path, text):
    p = tmp_path / "config.toml"
    p.write_text(text)
    return p


def test_defaults_work_without_a_file():
    cfg = load_config(None)
    assert cfg.source.kind == "sample" and cfg.mqtt.port == 1883
    assert cfg.resolved_models_dir().is_dir()


def test_file_overrides_defaults(tmp_path):
    cfg = load_config(write(tmp_path, 'device_id = "door1"\n[mqtt]\nport = 8883\n[decision]\nwindow = 7\n'))
    assert cfg.device_id == "door1" and cfg.mqtt.port == 8883 and cfg.decision.window == 7


@pytest.mark.parametrize(
    "text,match",
    [
        ("[mqtt]\nprot = 1\n", r"mqtt\.prot: unknown key"),
        ("colour = 1\n", r"colour: unknown key"),
        ("[decision]\nwindow = \"five\"\n", r"decision\.window: expected an integer"),
        ("[decision]\nwindow = 0\n", r"decision\.window: must be greater than 0"),
        ("[source]\nkind = \"webcam\"\n", r"source\.kind: 'webcam' is not one of"),
        ("[mqtt]\nport = 70000\n", r"mqtt\.port"),
        ("[decision]\nwindow = 2\nmin_frames = 3\n", r"min_frames"),
        ("mqtt = 3\n", r"mqtt: expected a \[mqtt\] table"),
        ("[mqtt\n", r"not valid TOML"),
    ],
)
def test_bad_config_names_the_key(tmp_path, text, match):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=match) as err:
        load_config(path)
    assert str(path) in str(err.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


def test_cli_stops_at_startup_with_the_key(tmp_path):
    import subprocess
    import sys

    path = write(tmp_path, "[liveness]\nmodel = [\"x\"]\n")
    r = subprocess.run([sys.executable, "-m", "edge_app", "run", "--config", str(path), "--no-mqtt"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "liveness.model: unknown key" in r.stderr


def test_unreadable_and_binary_config_files_are_named(tmp_path):
    d = tmp_path / "dir.toml"
    d.mkdir()
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(d)
    b = write(tmp_path, "")
    b.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ConfigError, match="not a UTF-8 text file"):
        load_config(b)
