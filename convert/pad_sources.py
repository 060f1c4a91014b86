"""The real presentation-attack sources: which repository commit, which files, what each name means.

Each public repository listed in ``../shared/datasets/pad_sources.tsv`` is cloned by the user
and the listed paths extracted into one cache directory, one folder per part named
``<owner>+<name>@<commit[:7]>`` (``python -m convert.pad_data extract`` does it from local
clones). This module only knows how to read those folders: for every image it yields the
labels that the file and folder names carry (source, person or video, label, attack kind,
capture device). Nothing here reads pixels.

Each part's ``domain`` is the unit a leave-one-source-out fold holds out: two parts that come
from the same original database (the CelebA-Spoof images of two repositories) share a domain,
so one never trains a model that is tested on the other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

IMAGE_EXT = {".jpg", ".jpeg", ".png", ".bmp"}


@dataclass(frozen=True)
class Row:
    path: str          # relative to the cache directory
    part: str          # the cache folder (repository@commit)
    source: str        # one original collection inside a part (celeba, oulu, kaggle, axon, ...)
    domain: str        # the unit held out together in leave-one-source-out
    group: str         # person or video: the unit a train/validation split must not cut
    label: str         # live / attack
    attack: str        # attack kind ("none" for lives)
    device: str        # capture device where the name says it, else the source's description
    licence: str


@dataclass(frozen=True)
class Part:
    repo: str
    commit: str
    paths: tuple[str, ...]
    licence: str
    parse: Callable[[Path, str], Row | None]  # (file, path relative to the cache) -> Row or None to skip

    @property
    def folder(self) -> str:
        return f"{self.repo.replace('/', '+')}@{self.commit[:7]}"


def _label(folder: str) -> str:
    return "live" if folder.lower() in ("live", "real") else "attack"


LIC_SURYA = "no repository licence; CelebA-Spoof non-commercial research; OULU-NPU academic use only"


def _surya(path: Path, rel: str) -> Row | None:
    name = path.stem
    label = _label(path.parent.name)
    part = "JonathanSuryaS+Anti-Spoofing-@c79789f"
    if name.startswith("celeba_"):
        person = name.split("_")[1]
        return Row(rel, part, "celeba", "celeba", f"celeba:{person}", label,
                   "none" if label == "live" else "celeba_spoof (print/replay/cut-out/paper mask)",
                   "web photos (live) / various cameras (attacks)", LIC_SURYA)
    if name.startswith("oulu_"):
        # oulu_<phone>_<session>_<user>_<file>_<frame>: file 1 live, 2-3 print, 4-5 replay
        _, phone, session, user, file, _frame = name.split("_")
        attack = {"1": "none", "2": "print", "3": "print", "4": "replay", "5": "replay"}[file]
        if (attack == "none") != (label == "live"):
            return None
        return Row(rel, part, "oulu", "oulu", f"oulu:{user}", label, attack, f"oulu phone {phone}", LIC_SURYA)
    if name.startswith("kaggle_"):
        # kaggle_<kind>_<dataset id>--<person id>[__<phone>][_f<frame>]
        m = re.match(r"kaggle_(live_selfie|live_video|cut-out_printouts|printouts|replay)_[0-9a-f]+--([0-9a-f]+)"
                     r"(?:__(.+?))?(?:_f\d+)?$", name)
        if not m:
            return None
        kind, person, device = m.groups()
        attack = {"cut-out_printouts": "cut-out", "printouts": "print", "replay": "replay"}.get(kind, "none")
        if (attack == "none") != (label == "live"):
            return None
        return Row(rel, part, "kaggle", "kaggle", f"kaggle:{person}", label, attack,
                   device.replace("_", " ") if device else "android phone", LIC_SURYA)
    return None


def _axon(path: Path, rel: str) -> Row | None:
    name = path.stem
    if not name.startswith("axon_"):
        return None  # this commit holds other sources too; only axon_* is listed for it
    part = "JonathanSuryaS+Anti-Spoofing-@7b3dfee"
    lic = "Axon Labs sample data, research use"
    if path.parent.name == "live":
        return Row(rel, part, "axon", "axon", f"axon:{name}", "live", "none", "phone selfie", lic)
    m = re.match(r"axon_(.+?)_(\d+)_f\d+$", name)
    if not m:
        m = re.match(r"axon_(.+?)_(Real_\d+)$", name)
        if not m:
            return None
    kind, video = m.groups()
    k = kind.lower()
    attack = ("silicone mask" if "silicone" in k else "latex mask" if "latex" in k else
              "textile mask" if "textile" in k else "paper mask" if "paper_mask" in k else
              "cut-out" if "cutout" in k else "monitor replay" if "display" in k else
              "mobile replay" if "mobile" in k else kind)
    return Row(rel, part, "axon", "axon", f"axon:{kind}:{video}", "attack", attack, "three phones (video frames)", lic)


def _vinay(path: Path, rel: str) -> Row | None:
    label = _label(path.parent.name)
    split = path.parent.parent.name
    n = int(re.sub(r"\D", "", path.stem) or 0)
    # numbered frames without a person id: blocks of 50 consecutive numbers stand in for a video
    return Row(rel, "VinayBR03+Face-Liveness-Detection@661b55e", "casia_fasd_like", "casia_fasd_like",
               f"vinay:{split}:{label}:{n // 50}", label, "none" if label == "live" else "print/cut/replay (mixed)",
               "webcam (lives), webcam and phone (attacks)", "MIT code; images likely CASIA-FASD (research use)")


def _vt(path: Path, rel: str) -> Row | None:
    label = _label(path.parent.parent.name)
    # person folders are spelt differently in real/ and spool/ ("Rihan Ale_46" / "rihan")
    person = path.parent.name.split()[0].split("_")[0].lower()
    return Row(rel, "VT-Thuy-Trang+Face_Liveness_Detection@3b29173", "vt_replay", "vt_replay", f"vt:{person}", label,
               "none" if label == "live" else "phone-screen replay", "laptop webcam", "none stated")


def _aksultan(path: Path, rel: str) -> Row | None:
    label = _label(path.parent.name)
    n = int(re.sub(r"\D", "", path.stem) or 0)
    return Row(rel, "AksultanMukhanbet+recognize_with_python@07ae905", "webcam_replay", "webcam_replay",
               f"aks:{label}:{n // 100}", label, "none" if label == "live" else "phone-screen replay",
               "webcam", "none stated")


def _reynara(path: Path, rel: str) -> Row | None:
    label = "live" if path.parent.name == "Live" else "attack"
    return Row(rel, "ReynaraEzra+Liveness-Detection@ff79a15", "celeba_r", "celeba", f"celeba_r:{path.stem}", label,
               "none" if label == "live" else "celeba_spoof (print/replay/mask)", "web photos / various cameras",
               "none stated; CelebA-Spoof non-commercial research")


PARTS: tuple[Part, ...] = (
    Part("JonathanSuryaS/Anti-Spoofing-", "c79789f66c01b8fc8a695e36ec9564154e0d8528", ("data/processed_cropped",),
         LIC_SURYA, _surya),
    Part("JonathanSuryaS/Anti-Spoofing-", "7b3dfee7983a2883b91be029787e4c8a1d6e0c24", ("data/processed_cropped",),
         "sample data, research use", _axon),
    Part("VinayBR03/Face-Liveness-Detection", "661b55eaf1a5832eea0a5b5b50e92cb836620d22", ("data/train", "data/test"),
         "MIT code; images likely CASIA-FASD", _vinay),
    Part("VT-Thuy-Trang/Face_Liveness_Detection", "3b29173da31fb5944dce3b4f4aa9de4eb1c9b522", ("data/train", "data/test"),
         "none stated", _vt),
    Part("AksultanMukhanbet/recognize_with_python", "07ae9051ad67307e34ef16024af03f11663b7093",
         ("dataset/real", "dataset/fake"), "none stated", _aksultan),
    Part("ReynaraEzra/Liveness-Detection", "ff79a15779ca7c7a0e98f6e4d70fbb1cb6d5a7c4", ("Dataset/Live", "Dataset/Spoof"),
         "none stated", _reynara),
)


def scan(cache: Path) -> Iterator[Row]:
    """Every labelled image of every part found under ``cache``, in a fixed order."""
    for part in PARTS:
        root = cache / part.folder
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: part {part.repo}@{part.commit[:7]} not extracted "
                                    f"(python -m convert.pad_data extract --clones DIR --cache {cache})")
        for sub in part.paths:
            for path in sorted((root / sub).rglob("*")):
                if path.suffix.lower() in IMAGE_EXT and path.is_file():
                    row = part.parse(path, str(path.relative_to(cache)))
                    if row is not None:
                        yield row
