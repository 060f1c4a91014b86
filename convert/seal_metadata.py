"""Record (or re-record) the ``metadata_sha256`` seal of model metadata and fusion files.

The code in ``convert/`` that writes ``models/*.json`` seals them itself
(``edge_app.tflite_model.write_metadata``); this command is for a deliberate hand edit, or
files written before seals existed::

    python -m convert.seal_metadata models/*.json

Each file is parsed, refused if it holds NaN or infinities, and rewritten with its seal.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edge_app.tflite_model import SEAL_KEY, metadata_digest, write_metadata


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", type=Path, help="metadata / fusion JSON files")
    args = parser.parse_args(argv)
    for path in args.paths:
        meta = json.loads(path.read_text())
        before = meta.get(SEAL_KEY)
        write_metadata(path, meta)
        state = "unchanged" if before == metadata_digest(meta) else "sealed"
        print(f"{path}: {state} ({metadata_digest(meta)[:16]}...)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
