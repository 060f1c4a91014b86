"""Issue 15, items 2, 4, 5, 8, 9, 11: still images and file frames are decoded strictly, within a
pixel budget, from regular files only, every decoder failure a per-file error; names are
escaped in human output. The bad files are made here, by the tests."""

from __future__ import annotations

import io
import os
import random
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge_app import jpeg_strict
from edge_app.forensics.errors import ForensicsError
from edge_app.forensics.loading import open_image
from edge_app.image_paths import expand_paths, printable
from edge_app.images import MAX_PIXELS, ImageLoadError, decode, load_rgb

REPO = Path(__file__).resolve().parents[1]
PRINT = REPO / "edge_app" / "sample" / "print.jpg"
LIVE = REPO / "edge_app" / "sample" / "live.jpg"
RSS = ("import resource, sys\nfrom edge_app.cli import main\ntry:\n    rc = main(sys.argv[1:])\n"
       "except SystemExit as exc:\n    rc = exc.code\n"
       "print('MAXRSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\nsys.exit(rc or 0)\n")


# -- bad files, made here -----------------------------------------------------------------

def scan_start(jpeg: bytes) -> int:
    sos = jpeg.index(b"\xff\xda")
    return sos + 2 + int.from_bytes(jpeg[sos + 2:sos + 4], "big")


def corrupt_scan(jpeg: bytes, seed: int, n: int = 16) -> bytes:
    """The red team's mutation: ``n`` bytes of the entropy-coded scan data changed."""
    r, b, start = random.Random(seed), bytearray(jpeg), scan_start(jpeg)
    for _ in range(n):
        b[r.randrange(start, len(b) - 2)] = r.randrange(256)
    return bytes(b)


def jpeg_declaring(width: int, height: int) -> bytes:
    """A ~630-byte JPEG whose frame header declares ``width`` x ``height``."""
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (120, 90, 60)).save(buf, "JPEG", quality=90)
    b = bytearray(buf.getvalue())
    i = b.index(b"\xff\xc0")
    b[i + 5:i + 7], b[i + 7:i + 9] = struct.pack(">H", height), struct.pack(">H", width)
    return bytes(b)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def big_png(width: int, height: int) -> bytes:
    """A valid all-black greyscale PNG, tiny on disk (the red team's 116 KB 6300x6300)."""
    z = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    data = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + png_chunk(b"IDAT", data) + png_chunk(b"IEND", b""))


def encoded(fmt: str, size=(64, 48), **kw) -> bytes:
    buf = io.BytesIO()
    Image.open(LIVE).convert("RGB").resize(size).save(buf, fmt, **kw)
    return buf.getvalue()


BAD_FILES = {
    "24-byte PNG": b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", b"\x00" * 4)[:16],
    "PPM with maxval 0": b"P6\n10 10\n0\n",
    "truncated JPEG": PRINT.read_bytes()[:3000],
    "JPEG header only": PRINT.read_bytes()[:scan_start(PRINT.read_bytes())],
    "PNG with a bad CRC": (lambda p: p[:-20] + bytes([p[-20] ^ 0xFF]) + p[-19:])(encoded("PNG")),
    "PNG IHDR 0x0": b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 0, 0, 8, 2, 0, 0, 0)),
    "BMP with a huge header size": b"BM" + struct.pack("<IHHI", 70, 0, 0, 54) + struct.pack("<I", 2**31 - 1) + b"\x00" * 60,
    "GIF (not accepted)": encoded("GIF"),
    "text": b"not an image at all\n",
    "empty": b"",
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_bad_files_are_per_file_errors_in_every_loader(tmp_path, name):
    path = tmp_path / "bad.jpg"
    path.write_bytes(BAD_FILES[name])
    with pytest.raises(ImageLoadError, match="bad.jpg"):
        load_rgb(path)
    with pytest.raises(ForensicsError, match="bad.jpg"):
        open_image(path, 40_000_000, 4_000_000)
    with pytest.raises(ForensicsError):
        open_image(BAD_FILES[name], 40_000_000, 4_000_000)


def test_liveness_goes_on_after_bad_files(tmp_path):
    """Item 4: a bad file stopped `liveness` with a traceback; the files after it were never scored."""
    for i, name in enumerate(BAD_FILES):
        (tmp_path / f"{i:02d}.png").write_bytes(BAD_FILES[name])
    (tmp_path / "99.jpg").write_bytes(PRINT.read_bytes())
    r = subprocess.run([sys.executable, "-m", "edge_app", "liveness", str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == len(BAD_FILES) + 1
    assert all("\terror\t" in line for line in lines[:-1])
    # the good file after them is scored as it is when scored alone
    alone = subprocess.run([sys.executable, "-m", "edge_app", "liveness", str(tmp_path / "99.jpg")],
                           capture_output=True, text=True, timeout=120)
    assert lines[-1].split("\t")[1:3] == alone.stdout.splitlines()[0].split("\t")[1:3]
    assert lines[-1].split("\t")[1] in ("live", "attack", "uncertain")


def test_corrupt_jpeg_scan_data_is_refused_not_scored(detector, scorer):
    """Item 2: copies of print.jpg with 16 scan-data bytes changed were decoded and scored, some
    `live`. libjpeg's warnings now refuse them; the few that libjpeg decodes without a warning
    are ordinary, valid JPEGs of a changed picture."""
    from edge_app.config import Config
    from edge_app.pipeline import Pipeline
    from edge_app.liveness.stills import score_still

    original = PRINT.read_bytes()
    assert jpeg_strict.available(), "libturbojpeg is needed for the strict JPEG check"
    pipe = Pipeline(Config(), detector, scorer, device_id="t")
    refused = 0
    for seed in range(60):
        data = corrupt_scan(original, seed)
        try:
            decode(data, f"copy {seed}")
        except ImageLoadError as exc:
            assert "corrupt or truncated JPEG data" in str(exc)
            refused += 1
            continue
        assert jpeg_strict.check(data) is None
    assert refused >= 55
    # and through the still path: the refused ones are errors
    for seed in (0, 1, 2, 3):
        path = Path(f"/tmp/edge_app_test_corrupt_{os.getpid()}_{seed}.jpg")
        path.write_bytes(corrupt_scan(original, seed))
        try:
            result = score_still(pipe, path)
        finally:
            path.unlink()
        assert result.decision in ("error", "attack", "no_face", "uncertain")


def test_a_tiny_file_declaring_huge_dimensions_is_refused_before_decoding(tmp_path):
    """Item 5: a 631-byte JPEG declaring 6000x6000 took the device from 143 to 608 MB."""
    data = jpeg_declaring(6000, 6000)
    assert len(data) < 1000
    with pytest.raises(ImageLoadError, match=r"6000x6000.*refused before decoding"):
        decode(data, "tiny.jpg")
    png = big_png(6300, 6300)
    assert len(png) < 200_000
    with pytest.raises(ImageLoadError, match=r"6300x6300.*refused before decoding"):
        decode(png, "big.png")
    with pytest.raises(ForensicsError, match="6000x6000"):
        open_image(data, MAX_PIXELS, 4_000_000)


def peak_rss_kb(*args: str) -> int:
    r = subprocess.run([sys.executable, "-c", RSS, *args], capture_output=True, text=True, timeout=180)
    assert "Traceback" not in r.stderr, r.stderr
    return int(r.stderr.rsplit("MAXRSS_KB", 1)[1].split()[0])


def test_peak_memory_of_a_declared_huge_image_stays_near_a_normal_one(tmp_path):
    """Peak RSS of `liveness` on the 6000x6000 JPEG and the 6300x6300 PNG, against print.jpg."""
    (tmp_path / "tiny.jpg").write_bytes(jpeg_declaring(6000, 6000))
    (tmp_path / "big.png").write_bytes(big_png(6300, 6300))
    normal = peak_rss_kb("liveness", str(PRINT))
    for name in ("tiny.jpg", "big.png"):
        grown_mb = (peak_rss_kb("liveness", str(tmp_path / name)) - normal) / 1024
        assert grown_mb < 20, f"{name}: peak RSS {grown_mb:.0f} MB above print.jpg's"


def test_the_pixel_budget_is_inclusive_and_exact():
    w = 4000
    h = MAX_PIXELS // w
    header_only = jpeg_declaring(w, h + 1)
    with pytest.raises(ImageLoadError, match="refused before decoding"):
        decode(header_only, "over.jpg")
    with pytest.raises(ImageLoadError) as err:  # at the budget: decoded (and found truncated)
        decode(jpeg_declaring(w, h), "at.jpg")
    assert "refused before decoding" not in str(err.value)


@pytest.mark.parametrize("loader", ["load_rgb", "open_image", "cli"])
def test_a_fifo_is_refused_without_blocking(tmp_path, loader):
    """Item 8: a FIFO given as an input hung `liveness` and `forensics` forever."""
    fifo = tmp_path / "frame.jpg"
    os.mkfifo(fifo)
    if loader == "load_rgb":
        with pytest.raises(ImageLoadError, match="is a FIFO, not a regular file"):
            load_rgb(fifo)
    elif loader == "open_image":
        with pytest.raises(ForensicsError, match="is a FIFO"):
            open_image(fifo, MAX_PIXELS, 4_000_000)
    else:
        for command in ("liveness", "forensics"):
            r = subprocess.run([sys.executable, "-m", "edge_app", command, str(fifo), str(PRINT)],
                               capture_output=True, text=True, timeout=120)
            assert r.returncode == 0 and "is a FIFO" in r.stdout and str(PRINT) in r.stdout


def test_a_fifo_config_is_refused(tmp_path):
    from edge_app.config import ConfigError, load_config

    fifo = tmp_path / "config.toml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="not a regular file"):
        load_config(fifo)


def test_a_file_name_cannot_forge_output_lines(tmp_path):
    """Item 9: a name with a newline and tabs printed a fake `/etc/passwd<TAB>live<TAB>0.9999` line."""
    evil = tmp_path / "x\n/etc/passwd\tlive\t0.9999\n.jpg"
    evil.parent.mkdir(parents=True)
    evil.write_bytes(PRINT.read_bytes())
    for command in ("liveness", "forensics"):
        r = subprocess.run([sys.executable, "-m", "edge_app", command, str(evil)],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert len(lines) == 1 and not any(line.startswith("/etc/passwd") for line in lines)
        assert "\\n/etc/passwd\\tlive\\t0.9999\\n.jpg" in lines[0]


def test_printable_escapes_control_characters_and_surrogates():
    assert printable("a\tb\nc\x1b[31m\u2028\udcff\\é") == "a\\tb\\nc\\x1b[31m\\u2028\\udcff\\\\é"


def test_path_problems_are_said_as_what_they_are(tmp_path):
    """Item 11: a symlink loop was reported as "no such file", a broken link likewise."""
    loop = tmp_path / "loop.jpg"
    os.symlink(loop, loop)
    broken = tmp_path / "broken.jpg"
    os.symlink(tmp_path / "nowhere.jpg", broken)
    problems = dict(expand_paths([loop, broken, tmp_path / "absent.jpg"]))
    assert "symbolic link loop" in problems[loop]
    assert "broken symbolic link" in problems[broken]
    assert "no such file" in problems[tmp_path / "absent.jpg"]
    with pytest.raises(ImageLoadError, match="symbolic link loop"):
        load_rgb(loop)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file: permissions cannot be tested")
def test_permission_problems_are_not_called_corrupt_or_empty(tmp_path):
    locked = tmp_path / "locked.jpg"
    locked.write_bytes(PRINT.read_bytes())
    locked.chmod(0)
    with pytest.raises(ImageLoadError, match="permission denied"):
        load_rgb(locked)
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(PRINT.read_bytes())
    folder.chmod(0)
    try:
        problems = [p for _, p in expand_paths([folder]) if p]
        assert problems and "cannot be read (permission denied)" in problems[0]
    finally:
        folder.chmod(0o700)


def test_formats_outside_the_list_are_not_decoded_whatever_the_name(tmp_path):
    path = tmp_path / "photo.jpg"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(path, "PPM")
    with pytest.raises(ImageLoadError, match="not an image file of a supported format"):
        load_rgb(path)


@pytest.mark.parametrize("fmt,kw", [("JPEG", {"quality": 90}), ("PNG", {}), ("BMP", {}), ("WEBP", {"lossless": True}),
                                    ("TIFF", {})])
def test_good_images_still_load(tmp_path, fmt, kw):
    rgb = load_rgb(_write(tmp_path / f"ok.{fmt.lower()}", encoded(fmt, **kw)))
    assert rgb.shape == (48, 64, 3) and rgb.dtype == np.uint8


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_spool_is_owner_only_outside_systemd(tmp_path):
    """Item 11: outside systemd the spool was 0644 in a 0755 folder."""
    from edge_app.hub.spool import Spool

    old = os.umask(0o022)
    try:
        spool = Spool(tmp_path / "state" / "spool.sqlite3")
        spool.put("e1", "{}")
        spool.close()
    finally:
        os.umask(old)
    assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "state" / "spool.sqlite3").stat().st_mode & 0o777 == 0o600
