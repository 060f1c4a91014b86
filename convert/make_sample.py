"""Make the built-in sample frames from scikit-image's public-domain astronaut photo.

    python -m convert.make_sample

Writes ``edge_app/sample/{live,print,empty}.jpg`` (640x480): the portrait in a plain
scene, the same portrait printed and held up to the camera (``convert.attack_sim``), and
the scene with nobody in it. NASA's photo of Eileen Collins is in the public domain.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from convert.attack_sim import recapture, simulate

OUT = Path(__file__).resolve().parents[1] / "edge_app" / "sample"
W, H = 640, 480


def scene(rng: np.random.Generator) -> np.ndarray:
    """A plain wall with a soft light gradient, like a corridor by a door."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    base = 150 + 40 * (xx / W) - 25 * (yy / H)
    wall = np.stack([base, base * 0.97, base * 0.9], axis=2) + rng.normal(0, 2, (H, W, 3))
    return np.clip(wall, 0, 255).astype(np.uint8)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    from skimage import data

    rng = np.random.default_rng(7)
    portrait = data.astronaut()  # 512x512 RGB
    empty = scene(rng)
    # live: the portrait fills the frame height the way a person at the door would
    person = np.asarray(Image.fromarray(portrait).resize((H, H), Image.LANCZOS))
    live = empty.copy()
    live[:, (W - H) // 2 : (W - H) // 2 + H] = person
    live = recapture(live, rng)
    # held up close, so the printed face is about as large as the live one (the detector needs it)
    attack = simulate(portrait, empty, "print", rng, fill=1.05)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, img in (("live", live), ("print", attack), ("empty", empty)):
        Image.fromarray(img).save(args.out / f"{name}.jpg", quality=92)
        print(f"wrote {args.out / name}.jpg")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
