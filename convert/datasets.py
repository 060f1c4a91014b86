"""Where the research data lives and how it is split.

The data sets are read in place from ``../shared/datasets`` (or ``$EDGE_APP_DATASETS``)
and never copied into the repository.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# NUAA has 15 people; near-duplicate frames of one person leak across a random split,
# so train, validation and test hold different subjects. 0013 has only live frames and
# 0016 only prints, so both stay in training where the other class is plentiful.
NUAA_SPLIT = {
    "train": ("0001", "0004", "0005", "0006", "0007", "0010", "0013", "0014", "0016"),
    "val": ("0002", "0008", "0011"),
    "test": ("0003", "0009", "0012", "0015"),
}


def datasets_root() -> Path:
    return Path(os.environ.get("EDGE_APP_DATASETS", REPO.parent / "shared" / "datasets"))


@dataclass(frozen=True)
class Sample:
    path: Path
    label: str  # live / print / replay / authentic / tampered ...
    group: str  # subject, identity or source: the unit a split must not cut through
    extra: dict


def read_manifest(name: str) -> list[Sample]:
    folder = datasets_root() / name
    manifest = folder / "manifest.csv"
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest}: data set {name!r} not found (set EDGE_APP_DATASETS)")
    samples = []
    with open(manifest, newline="") as fh:
        for row in csv.DictReader(fh):
            group = row.get("subject") or row.get("path")
            samples.append(Sample(folder / row["path"], row["label"], group, row))
    return samples


def nuaa_split(split: str) -> list[Sample]:
    subjects = set(NUAA_SPLIT[split])
    return [s for s in read_manifest("nuaa") if s.group in subjects]
