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


# -- issue 15, item 7: values that broke things, and every number's range ---------------------

BROKE_THINGS = [
    ("[liveness]\nthreads = 1099511627776\n", r"liveness\.threads: 1099511627776 is outside"),
    ("[mqtt]\nhealth_interval_s = nan\n", r"mqtt\.health_interval_s: expected a finite number"),
    ("[source]\nfps = 1e-300\n", r"source\.fps"),
    ("[mqtt]\nkeepalive_s = 100000\n", r"mqtt\.keepalive_s: 100000 is outside"),
    ('[mqtt]\nclient_id = "' + "c" * 65536 + '"\n', r"mqtt\.client_id: at most 128 characters"),
    ("[source]\nwidth = 1000000\n", r"source\.width: 1000000 is outside"),
    ("[source]\nwidth = 8192\nheight = 8192\n", r"source\.width x source\.height"),
    ("[snapshots]\nretention_hours = nan\n", r"snapshots\.retention_hours: expected a finite number"),
    ("[detector]\nmax_faces = 0\n", r"detector\.max_faces: 0 is outside"),
    ("[decision]\nlost_after_frames = 0\n", r"decision\.lost_after_frames: 0 is outside"),
    ("[decision]\nmax_frame_age_s = inf\n", r"decision\.max_frame_age_s: expected a finite number"),
    ("[decision]\nuncertain_margin = -1.0\n", r"decision\.uncertain_margin"),
    ("[decision]\ntrack_iou = 0.0\n", r"decision\.track_iou"),
    ("[detector]\nmin_face_fraction = 2.0\n", r"detector\.min_face_fraction"),
    ("[snapshots]\nmax_files = 0\n", r"snapshots\.max_files"),
    ("[snapshots]\npurge_interval_s = -inf\n", r"snapshots\.purge_interval_s"),
    ("[mqtt]\nspool_max_events = 0\n", r"mqtt\.spool_max_events"),
    ("[mqtt]\nreconnect_min_s = 10.0\nreconnect_max_s = 1.0\n", r"mqtt\.reconnect_min_s"),
    ("[forensics]\nthreshold = 1.5\n", r"forensics\.threshold"),
    ("[forensics]\nmax_pixels = 100000000\n", r"forensics\.max_pixels"),
    ("[forensics]\nanalysis_max_pixels = 20000000\nmax_pixels = 10000000\n", r"forensics\.analysis_max_pixels"),
    ("[doctor]\nmax_cpu_temp_c = nan\n", r"doctor\.max_cpu_temp_c"),
    ("[indicator]\nline = 100000\n", r"indicator\.line"),
    ('[liveness]\nmodels = ["../../etc/passwd"]\n', r"liveness\.models: '\.\./\.\./etc/passwd' is not a model name"),
    ('[liveness]\nmodels = ["liveness_cnn", "liveness_cnn"]\n', r"liveness\.models: a model is named twice"),
    ('[forensics]\nmodel = "a/b"\n', r"forensics\.model"),
    ('device_id = "a\\u0000b"\n', r"device_id: contains a NUL character"),
]


@pytest.mark.parametrize("text,match", BROKE_THINGS)
def test_values_that_broke_things_are_refused_with_the_key(tmp_path, text, match):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=match) as err:
        load_config(path)
    assert str(path) in str(err.value)


def test_models_dir_naming_a_file_is_refused(tmp_path):
    f = tmp_path / "models"
    f.write_text("x")
    with pytest.raises(ConfigError, match=r"liveness\.models_dir: .* is not a folder"):
        load_config(write(tmp_path, f'[liveness]\nmodels_dir = "{f}"\n'))


def test_every_number_in_the_config_has_a_range():
    import dataclasses

    from edge_app import config as config_mod

    def numeric_keys(obj, prefix=""):
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                yield from numeric_keys(value, f"{prefix}{f.name}.")
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                yield f"{prefix}{f.name}"

    keys = set(numeric_keys(config_mod.Config()))
    assert keys and keys == set(config_mod._RANGES)


@pytest.mark.parametrize("key", ["mqtt.keepalive_s", "source.width", "liveness.threads"])
def test_run_stops_at_once_on_an_out_of_range_value(tmp_path, key):
    """Huge keepalive_s killed the MQTT thread for good; a huge width hung start-up."""
    import subprocess
    import sys

    section, name = key.split(".")
    path = write(tmp_path, f"[{section}]\n{name} = 1099511627776\n")
    r = subprocess.run([sys.executable, "-m", "edge_app", "run", "--config", str(path), "--no-mqtt", "--once"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and f"{key}: 1099511627776 is outside" in r.stderr and "Traceback" not in r.stderr


def test_an_overlong_models_dir_is_a_config_error(tmp_path):
    """Found by tests/test_fuzz.py at EDGE_APP_FUZZ_SCALE=25: Path.exists() raised ENAMETOOLONG."""
    with pytest.raises(ConfigError, match=r"liveness\.models_dir: at most 4096 characters"):
        load_config(write(tmp_path, f'[liveness]\nmodels_dir = "{"x" * 70000}"\n'))
    with pytest.raises(ConfigError, match=r"liveness\.models_dir: unusable path"):  # short enough, a level too long
        load_config(write(tmp_path, f'[liveness]\nmodels_dir = "{"x" * 300}/y"\n'))
    with pytest.raises(ConfigError, match="cannot be read"):
        load_config(tmp_path / ("y" * 300))
