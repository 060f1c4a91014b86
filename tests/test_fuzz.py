"""Fuzzing (issue 15): mutated images through every loader and the still path, random configs,
malformed MQTT commands to a real device on a real broker, and the CLI on a corpus of bad files.

The property everywhere: an input is either accepted or refused with the module's own error
naming it; never another exception, a hang, or `live` from a refused input. CI runs a bounded
number of examples (about a minute in all). A longer run by hand scales every count::

    EDGE_APP_FUZZ_SCALE=20 .venv/bin/python -m pytest -q tests/test_fuzz.py -s

(with -s it prints what it ran and the process' peak RSS before and after the image fuzzing).
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import random
import resource
import string
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from broker import broker, mosquitto  # noqa: F401  (fixtures)
from edge_app.config import Config, ConfigError, load_config
from edge_app.forensics.errors import ForensicsError
from edge_app.forensics.loading import open_image
from edge_app.images import MAX_PIXELS, ImageLoadError, decode
from test_mqtt import publishers  # noqa: F401  (fixture)

REPO = Path(__file__).resolve().parents[1]
LIVE = REPO / "edge_app" / "sample" / "live.jpg"
PRINT = REPO / "edge_app" / "sample" / "print.jpg"
SCALE = float(os.environ.get("EDGE_APP_FUZZ_SCALE", "1"))


def n(base: int) -> int:
    return max(1, int(base * SCALE))


def fuzz_settings(examples: int):
    return settings(max_examples=n(examples), deadline=None, derandomize=SCALE == 1,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- seeds: small valid images of every accepted format ------------------------------------------

def _seeds() -> dict[str, bytes]:
    rgb = Image.open(LIVE).convert("RGB").resize((96, 72))
    out = {}
    for name, fmt, kw, image in [
        ("jpeg", "JPEG", {"quality": 90}, rgb),
        ("jpeg_progressive", "JPEG", {"quality": 80, "progressive": True}, rgb),
        ("jpeg_444_restart", "JPEG", {"quality": 95, "subsampling": 0, "restart_marker_blocks": 4}, rgb),
        ("jpeg_grey", "JPEG", {}, rgb.convert("L")),
        ("png", "PNG", {}, rgb),
        ("png_palette", "PNG", {}, rgb.convert("P")),
        ("png_rgba16", "PNG", {}, rgb.convert("RGBA")),
        ("bmp", "BMP", {}, rgb),
        ("webp", "WEBP", {"quality": 80}, rgb),
        ("webp_lossless", "WEBP", {"lossless": True}, rgb),
        ("tiff", "TIFF", {}, rgb),
        ("tiff_lzw", "TIFF", {"compression": "tiff_lzw"}, rgb),
    ]:
        buf = io.BytesIO()
        image.save(buf, fmt, **kw)
        out[name] = buf.getvalue()
    out["print_jpeg"] = PRINT.read_bytes()
    return out


SEEDS = _seeds()

# big-endian / little-endian 16- and 32-bit values that headers hold as dimensions or lengths
HUGE = [0, 1, 0x7F, 0xFF, 0x7FFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0xFFFFFFFF]


@st.composite
def mutated(draw) -> bytes:
    name = draw(st.sampled_from(sorted(SEEDS)))
    data = bytearray(SEEDS[name])
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete", "field16", "field32"]))
        if not data:
            break
        pos = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            data[pos] = draw(st.integers(0, 255))
        elif kind == "truncate":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "delete":
            del data[pos:pos + draw(st.integers(1, 64))]
        else:
            width = 2 if kind == "field16" else 4
            value = draw(st.sampled_from(HUGE)) & ((1 << (8 * width)) - 1)
            data[pos:pos + width] = value.to_bytes(width, draw(st.sampled_from(["big", "little"])))
    return bytes(data)


def check_decoded(rgb: np.ndarray) -> None:
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    assert 0 < rgb.shape[0] * rgb.shape[1] <= MAX_PIXELS


@fuzz_settings(400)
@given(data=mutated())
def test_fuzz_image_loaders(data):
    try:
        check_decoded(decode(data, "fuzz").rgb)
    except ImageLoadError as exc:
        assert str(exc).startswith("fuzz")
    try:
        check_decoded(open_image(data, MAX_PIXELS, 4_000_000, name="fuzz").rgb)
    except ForensicsError as exc:
        assert str(exc).startswith("fuzz")


@pytest.fixture(scope="module")
def still_pipeline(detector, scorer):
    from edge_app.pipeline import Pipeline

    return Pipeline(Config(), detector, scorer, device_id="fuzz")


@fuzz_settings(60)
@given(data=mutated())
def test_fuzz_the_still_path_never_raises(still_pipeline, tmp_path_factory, data):
    from edge_app.liveness.stills import score_still

    path = tmp_path_factory.mktemp("still") / "fuzz.jpg"
    path.write_bytes(data)
    result = score_still(still_pipeline, path)
    assert result.decision in ("live", "attack", "uncertain", "no_face", "error")
    if result.decision == "error":
        assert result.score is None
    else:
        assert result.score is None or (math.isfinite(result.score) and 0 <= result.score <= 1)


def test_fuzz_report_peak_rss():
    """Runs after the image fuzzing in this module: the process' peak so far, for the report."""
    print(f"\n[fuzz] scale {SCALE}: image loaders {n(400)} examples, still path {n(60)}; "
          f"process peak RSS {peak_rss_mb():.0f} MB")


# -- configs --------------------------------------------------------------------------------------

def _known_keys() -> dict[str, list[str]]:
    import dataclasses

    cfg = Config()
    out = {"": []}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            out[f.name] = [g.name for g in dataclasses.fields(value)]
        else:
            out[""].append(f.name)
    return out


KEYS = _known_keys()
scalars = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from([0, 1, -1, 2**31, 2**40, 65535, 65536]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e-300, 1e300, 0.5, float("nan"), float("inf")]),
    st.booleans(),
    st.text(max_size=40),
    st.sampled_from(["", "../x", "a/b", "\x00", "x" * 70000, "x" * 300, "y" * 255 + "/z", "sample", "files",
                     "picamera2", "5", "3.1.1"]),
)
values = st.one_of(scalars, st.lists(st.one_of(st.text(max_size=20), st.integers()), max_size=4))


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a TOML basic string, or (a lone surrogate) a TOML syntax error
    return "[" + ", ".join(toml_value(x) for x in v) + "]"


@st.composite
def config_text(draw) -> str:
    lines = []
    for key in draw(st.lists(st.sampled_from(KEYS[""] + ["bogus"]), max_size=2, unique=True)):
        lines.append(f"{key} = {toml_value(draw(values))}")
    for section in draw(st.lists(st.sampled_from(sorted(k for k in KEYS if k)), max_size=4, unique=True)):
        lines.append(f"[{section}]")
        for key in draw(st.lists(st.sampled_from(KEYS[section] + ["typo"]), min_size=1, max_size=5, unique=True)):
            lines.append(f"{key} = {toml_value(draw(values))}")
    return "\n".join(lines) + "\n"


@fuzz_settings(300)
@given(text=config_text())
def test_fuzz_config(tmp_path_factory, text):
    from edge_app.hub.topics import topics_for

    path = tmp_path_factory.mktemp("cfg") / "config.toml"
    path.write_text(text, errors="surrogatepass")
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        assert str(path) in str(exc)
        return
    # an accepted config is usable: every number finite and within what a Pi can do
    for section in (cfg.source, cfg.decision, cfg.liveness, cfg.mqtt, cfg.snapshots, cfg.forensics):
        for value in vars(section).values():
            if isinstance(value, float):
                assert math.isfinite(value)
    assert cfg.source.width * cfg.source.height <= MAX_PIXELS
    try:
        topics_for(cfg.mqtt, cfg.resolved_device_id())
    except ConfigError:
        pass


# -- MQTT commands ----------------------------------------------------------------------------

def _requests(count: int, seed: int) -> list[tuple[str, bytes]]:
    r = random.Random(seed)
    jpeg = SEEDS["jpeg"]
    out = []
    for _ in range(count):
        kind = r.randrange(10)
        command = r.choice(["verify", "check_image"])
        if kind == 0:
            payload = bytes(r.randrange(256) for _ in range(r.randrange(0, 200)))
        elif kind == 1:
            depth = r.choice([10, 1000, 30000])
            payload = (b"[" * depth + b"]" * depth) if r.random() < 0.5 else (b'{"a":' * depth + b"1" + b"}" * depth)
        elif kind == 2:
            rid = r.choice(["\\ud800", "\\udfff", "x" * 200, "ok", "\\u0000", "\\ud83d\\ude00"])
            payload = ('{"request_id": "%s"}' % rid).encode()
        elif kind == 3:
            rid = r.choice([None, True, 1.5, [1], {"a": 1}, 2**70, -1, ""])
            payload = json.dumps({"request_id": rid}).encode()
        elif kind == 4:
            b = bytearray(jpeg)
            for _ in range(r.randrange(1, 12)):
                b[r.randrange(2, len(b))] = r.randrange(256)
            payload = bytes(b)
            command = "check_image"
        elif kind == 5:
            data = bytes(r.randrange(256) for _ in range(r.randrange(0, 300)))
            payload = json.dumps({"request_id": "b", "jpeg_base64": base64.b64encode(b"\xff\xd8" + data).decode()}).encode()
            command = "check_image"
        elif kind == 6:
            payload = json.dumps({"jpeg_base64": "".join(r.choice(string.printable) for _ in range(40))}).encode()
            command = "check_image"
        elif kind == 7:
            payload = b"\xff\xd8" + jpeg[2:r.randrange(3, len(jpeg))]
            command = "check_image"
        elif kind == 8:
            payload = r.choice([b"", b" ", b"null", b"1e999", b"NaN", b'"x"', b"{}", b'{"request_id": 1e999}'])
        else:
            payload = b"\xef\xbb\xbf" + json.dumps({"request_id": "bom"}).encode()
        out.append((command, payload))
    return out


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_fuzz_mqtt_commands_are_all_answered(broker, publishers, protocol):
    from broker import Subscriber
    from edge_app.forensics.check import check_image_bytes
    from test_mqtt import BASE, make_cfg, make_event

    count = n(150)
    pub = publishers(make_cfg(broker, protocol=protocol))
    pub.set_verify_handler(lambda: make_event(pub, "attack"))
    pub.set_check_image_handler(lambda jpeg: check_image_bytes(jpeg))
    assert pub.wait_connected(5)
    sub = Subscriber(broker, [f"{BASE}/verify/result", f"{BASE}/check_image/result"], protocol=protocol).start()
    requests = _requests(count, seed=15 if SCALE == 1 else int(time.time()))
    answered = 0
    for i, (command, payload) in enumerate(requests):
        sub.publish(f"{BASE}/cmd/{command}", payload, qos=1)
        if command == "check_image" or i % 20 == 19:  # paced so the image queue never answers "busy"
            sub.wait_for(lambda ms, k=i + 1: len(ms) >= k, what=f"the answer to request {i}", timeout=30)
    got = sub.wait_for(lambda ms: len(ms) >= count, what="an answer to every request", timeout=30)
    time.sleep(0.2)
    answered = len(sub.messages())
    sub.stop()
    assert answered == count
    docs = [m.json() for m in got]
    assert all(d["status"] in ("ok", "error", "not_available") for d in docs)
    assert all(d.get("event") is None or d["event"]["decision"] != "live" for d in docs)
    print(f"\n[fuzz] MQTT {protocol}: {count} requests, {answered} answered, "
          f"{sum(d['status'] == 'error' for d in docs)} errors, process peak RSS {peak_rss_mb():.0f} MB")


# -- the CLI on a corpus of bad files ---------------------------------------------------------------

def test_fuzz_cli_on_a_corpus_of_bad_files(tmp_path):
    r = random.Random(15)
    names = sorted(SEEDS)
    count = n(40)
    for i in range(count):
        data = bytearray(SEEDS[names[i % len(names)]])
        for _ in range(r.randrange(1, 10)):
            op = r.randrange(3)
            pos = r.randrange(len(data))
            if op == 0:
                data[pos] = r.randrange(256)
            elif op == 1:
                del data[pos:]
            else:
                data[pos:pos + 4] = r.choice(HUGE).to_bytes(4, "big")
            if not data:
                break
        (tmp_path / f"{i:05d}.jpg").write_bytes(bytes(data))
    for command in ("liveness", "forensics"):
        res = subprocess.run([sys.executable, "-m", "edge_app", command, str(tmp_path)],
                             capture_output=True, text=True, timeout=600)
        assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr[-2000:]
        lines = res.stdout.splitlines()
        assert len(lines) == count
        print(f"\n[fuzz] {command}: {count} files, "
              f"{sum(line.split(chr(9))[1] == 'error' for line in lines)} refused")
