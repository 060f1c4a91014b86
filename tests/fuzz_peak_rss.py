"""Peak memory of single fuzzed inputs, by hand (issue 15; not collected by pytest).

Each input is decoded in a forked child (``edge_app.images.decode``, then
``edge_app.forensics.loading.open_image``); the child resets its peak (``/proc/self/clear_refs``) and
reports VmHWM minus its RSS at the start: what one input costs on top of a running process.
The inputs are the fuzz suite's seed images mutated at random, plus headers patched to declare
the largest sizes within the pixel budget::

    .venv/bin/python tests/fuzz_peak_rss.py 2000
"""

from __future__ import annotations

import os
import random
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_fuzz import HUGE, SEEDS  # noqa: E402

from edge_app.forensics.errors import ForensicsError  # noqa: E402
from edge_app.forensics.loading import open_image  # noqa: E402
from edge_app.images import MAX_PIXELS, ImageLoadError, decode  # noqa: E402


def status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def rss_kb() -> int:
    return status_kb("VmRSS")


def mutate(r: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(r.randrange(1, 8)):
        if not b:
            break
        pos = r.randrange(len(b))
        op = r.randrange(4)
        if op == 0:
            b[pos] = r.randrange(256)
        elif op == 1:
            del b[pos:]
        elif op == 2:
            b[pos:pos + 2] = (r.choice(HUGE) & 0xFFFF).to_bytes(2, r.choice(["big", "little"]))
        else:
            b[pos:pos + 4] = (r.choice(HUGE) & 0xFFFFFFFF).to_bytes(4, r.choice(["big", "little"]))
    return bytes(b)


def declared(data: bytes, w: int, h: int) -> bytes:
    """A JPEG seed with its frame header patched to ``w`` x ``h``."""
    b = bytearray(data)
    i = b.index(b"\xff\xc0") if b"\xff\xc0" in b else b.index(b"\xff\xc2")
    b[i + 5:i + 9] = struct.pack(">HH", h, w)
    return bytes(b)


def largest_valid() -> list[tuple[str, bytes]]:
    """Valid images at the budget in every format: the real worst cases, which mutation rarely finds."""
    import io

    from PIL import Image

    big = Image.open(io.BytesIO(SEEDS["print_jpeg"])).convert("RGB").resize((4080, 3060))
    out = []
    for fmt, mode, kw in (("JPEG", "RGB", {"quality": 92}), ("JPEG", "CMYK", {}), ("PNG", "RGBA", {}),
                          ("PNG", "P", {}), ("BMP", "RGB", {}), ("TIFF", "RGB", {}), ("WEBP", "RGB", {})):
        image = big.resize((2880, 2160)) if fmt == "WEBP" else big
        buf = io.BytesIO()
        image.convert(mode).save(buf, fmt, **kw)
        out.append((f"valid {fmt} {mode} {image.width}x{image.height}", buf.getvalue()))
    return out


def child_peak(data: bytes) -> tuple[int, str]:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # resets VmHWM to the current RSS
        start = status_kb("VmRSS")
        outcome = "decoded"
        try:
            decode(data, "x")
        except ImageLoadError:
            outcome = "refused"
        try:
            open_image(data, MAX_PIXELS, 4_000_000, name="x")
        except ForensicsError:
            pass
        except BaseException as exc:  # the property under test: nothing else ever escapes
            outcome = f"UNCAUGHT {type(exc).__name__}: {exc}"
        os.write(w, f"{status_kb('VmHWM') - start} {outcome}".encode())
        os._exit(0)
    os.close(w)
    msg = os.read(r, 4096).decode()
    os.close(r)
    os.waitpid(pid, 0)
    peak, outcome = msg.split(" ", 1)
    return int(peak), outcome


def main() -> int:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    r = random.Random(int(sys.argv[2]) if len(sys.argv) > 2 else 15)
    names = sorted(SEEDS)
    inputs = [(f"declared {w}x{h}", declared(SEEDS["jpeg"], w, h))
              for w, h in ((4000, 3125), (12500, 1000), (65535, 190), (3536, 3535))]
    inputs += largest_valid()
    inputs += [(f"{names[i % len(names)]} #{i}", mutate(r, SEEDS[names[i % len(names)]])) for i in range(count)]
    base = rss_kb()
    worst, outcomes, uncaught = (0, ""), {}, []  # worst: (kB above the child's starting RSS, input)
    for label, data in inputs:
        peak, outcome = child_peak(data)
        outcomes[outcome.split(":")[0]] = outcomes.get(outcome.split(":")[0], 0) + 1
        if outcome.startswith("UNCAUGHT"):
            uncaught.append(f"{label}: {outcome}")
        if peak > worst[0]:
            worst = (peak, label)
    print(f"{len(inputs)} inputs: {outcomes}; parent RSS {base / 1024:.0f} MB; largest peak above it "
          f"{worst[0] / 1024:.0f} MB ({worst[1]})")
    for line in uncaught[:20]:
        print(line)
    return 1 if uncaught else 0


if __name__ == "__main__":
    raise SystemExit(main())
