"""convert.pad_sources / convert.pad_data: names read right, duplicates found, every framing keeps the face."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from convert import pad_data
from convert.pad_sources import PARTS, scan


def _face_picture(seed: int, size: int = 160) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (8, 8, 3)).astype(np.uint8)
    return Image.fromarray(base).resize((size, size), Image.BICUBIC)


@pytest.fixture
def cache(tmp_path):
    """A cache with every part's folder and a few real JPEGs named as the repositories name them."""
    for part in PARTS:
        (tmp_path / part.folder).mkdir()
    surya = tmp_path / "JonathanSuryaS+Anti-Spoofing-@c79789f" / "data" / "processed_cropped"
    files = {
        surya / "train/live/celeba_10044_100175.jpg": 1,
        surya / "train/spoof/celeba_10044_017548.jpg": 2,
        surya / "test_oulu/live/oulu_1_1_36_1_1.jpg": 3,
        surya / "test_oulu/spoof/oulu_1_1_36_4_1.jpg": 4,
        surya / "test_kaggle/live/kaggle_live_selfie_0001e96803--6228928cb608822f9f53589e__Xiaomi_redmi_note_9_pro.jpg": 5,
        surya / "test_kaggle/spoof/kaggle_cut-out_printouts_0001e96803--6228928cb608822f9f53589e_f00.jpg": 6,
        tmp_path / "JonathanSuryaS+Anti-Spoofing-@7b3dfee/data/processed_cropped/spoof/axon_Silicone_mask_Mask_3_17_f0002.jpg": 7,
        tmp_path / "JonathanSuryaS+Anti-Spoofing-@7b3dfee/data/processed_cropped/spoof/oulu1_x.jpg": 8,  # not listed: skipped
        tmp_path / "VT-Thuy-Trang+Face_Liveness_Detection@3b29173/data/train/real/Rihan Ale_46/a.jpg": 9,
        tmp_path / "VT-Thuy-Trang+Face_Liveness_Detection@3b29173/data/test/spool/rihan/b.jpg": 10,
    }
    for path, seed in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        _face_picture(seed).save(path, quality=92)
    # an exact copy and a re-saved copy of the celeba live picture
    live = surya / "train/live/celeba_10044_100175.jpg"
    (surya / "train/live/celeba_10044_100176.jpg").write_bytes(live.read_bytes())
    Image.open(live).save(surya / "train/live/celeba_10044_100177.jpg", quality=70)
    return tmp_path


def test_names_give_source_person_label_and_attack_kind(cache):
    rows = {r.path.rsplit("/", 1)[-1]: r for r in scan(cache)}
    assert "oulu1_x.jpg" not in rows  # only axon_* is listed for that commit
    oulu = rows["oulu_1_1_36_4_1.jpg"]
    assert (oulu.source, oulu.group, oulu.label, oulu.attack) == ("oulu", "oulu:36", "attack", "replay")
    kag = rows["kaggle_live_selfie_0001e96803--6228928cb608822f9f53589e__Xiaomi_redmi_note_9_pro.jpg"]
    assert (kag.label, kag.attack, kag.device, kag.group) == ("live", "none", "Xiaomi redmi note 9 pro",
                                                             "kaggle:6228928cb608822f9f53589e")
    axon = rows["axon_Silicone_mask_Mask_3_17_f0002.jpg"]
    assert (axon.label, axon.attack, axon.group) == ("attack", "silicone mask", "axon:Silicone_mask_Mask_3:17")
    # one person, spelt two ways in the live and attack folders, is one group
    assert rows["a.jpg"].group == rows["b.jpg"].group == "vt:rihan"
    assert rows["a.jpg"].label == "live" and rows["b.jpg"].label == "attack"


def test_a_missing_part_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="JonathanSuryaS/Anti-Spoofing-@c79789f"):
        list(scan(tmp_path))


def test_manifest_drops_exact_and_near_duplicates_and_keeps_distinct_pictures(cache, monkeypatch):
    monkeypatch.setattr(pad_data, "nuaa_rows", lambda: [])
    rows = {r["path"].rsplit("/", 1)[-1]: r for r in pad_data.build_manifest(cache, workers=1)}
    assert rows["celeba_10044_100175.jpg"]["dropped"] == ""
    assert rows["celeba_10044_100176.jpg"]["dropped"].startswith("exact duplicate of")
    assert rows["celeba_10044_100177.jpg"]["dropped"].startswith("near duplicate of")
    kept = [r for r in rows.values() if not r["dropped"]]
    assert len(kept) == 9 and all(len(r["sha256"]) == 64 for r in kept)


def test_near_duplicates_finds_pairs_within_the_bit_budget_only():
    rng = np.random.default_rng(0)
    a = int(rng.integers(0, 2**63))
    hashes = np.array([a, a ^ 0b111, a ^ 0b1111, a ^ (0xFFFF << 20)], dtype=np.uint64)
    # 0-1: 3 bits, 1-2: 1 bit, 0-2: 4 bits, 3: 16 bits from all
    assert pad_data.near_duplicates(hashes, bits=3) == [(0, 1), (1, 2)]


def test_every_framing_cuts_the_same_face(detector):
    from edge_app.frames.sources.sample import sample_image

    pad_data._W.update(detector=detector, scenes=[])
    rgb = sample_image("live")
    face = pad_data.detect_with_margin(rgb)
    assert face is not None
    view, vface = pad_data.normalised_view(rgb, face, 2.0)
    assert view.shape == (pad_data.VIEW_SIZE, pad_data.VIEW_SIZE, 3)
    # the box moved with the pixels: the detector finds the face where the mapping put it
    found = detector.detect(view)
    assert found and abs(found[0].x - vface.x) < 0.15 * vface.w and abs(found[0].w - vface.w) < 0.25 * vface.w
    frame, cface = pad_data.canvas_frame(view, vface, np.random.default_rng(1))
    assert frame.shape == (pad_data.CANVAS_H, pad_data.CANVAS_W, 3)
    lo, hi = pad_data.FACE_FRACTION
    assert lo * 0.9 <= cface.w / pad_data.CANVAS_W <= hi * 1.1
    found = detector.detect(frame)
    assert found and abs(found[0].x - cface.x) < 0.2 * cface.w


def test_a_face_cut_by_the_border_is_found_with_a_margin(detector):
    from edge_app.frames.sources.sample import sample_image

    pad_data._W.update(detector=detector, scenes=[])
    rgb = sample_image("live")
    face = detector.detect(rgb)[0]
    # a tight selfie crop: the face fills the picture and its chin and forehead are cut
    x0, y0 = int(face.x + 0.1 * face.w), int(face.y + 0.15 * face.h)
    tight = np.ascontiguousarray(rgb[y0:int(face.y + 0.9 * face.h), x0:int(face.x + 0.9 * face.w)])
    got = pad_data.detect_with_margin(tight)
    assert got is not None
    assert 0 <= got.x and got.x + got.w <= tight.shape[1] + 1e-6 and got.w > 0.5 * tight.shape[1]


def test_calibration_threshold_is_the_domain_balanced_equal_error_point():
    from types import SimpleNamespace

    from convert.train_liveness import calibration_threshold

    # domain a: 4 lives at 0.6-0.9, 4 attacks at 0.1-0.4 (separable); domain b: 100 lives and
    # 100 attacks that overlap. Weighted per domain, b's size does not drown a.
    rng = np.random.default_rng(0)
    a_live, a_att = np.array([0.6, 0.7, 0.8, 0.9]), np.array([0.1, 0.2, 0.3, 0.4])
    b_live, b_att = rng.uniform(0.3, 0.8, 100), rng.uniform(0.2, 0.7, 100)
    scores = np.r_[a_live, a_att, b_live, b_att]
    crops = SimpleNamespace(label=np.r_[np.ones(4), np.zeros(4), np.ones(100), np.zeros(100)].astype(np.float32),
                            domain=np.array(["a"] * 8 + ["b"] * 200))
    t = calibration_threshold(scores, np.arange(len(scores)), crops)
    live, att = crops.label == 1, crops.label == 0
    ap = np.mean([np.mean(scores[(crops.domain == d) & att] >= t) for d in ("a", "b")])
    bp = np.mean([np.mean(scores[(crops.domain == d) & live] < t) for d in ("a", "b")])
    assert abs(ap - bp) < 0.03
    # a threshold that looks only at the big domain would differ; each error rate is a mean over domains
    assert 0.4 <= t <= 0.6


def test_calibration_threshold_on_a_tiny_pool_is_its_equal_error_score():
    from types import SimpleNamespace

    from convert.train_liveness import calibration_threshold

    scores = np.array([0.2, 0.8, 0.3, 0.7])  # lives 0.2, 0.8; attacks 0.3, 0.7: at 0.7 APCER = BPCER = 1/2
    crops = SimpleNamespace(label=np.array([1, 1, 0, 0], np.float32), domain=np.array(["a"] * 4))
    assert calibration_threshold(scores, np.arange(4), crops) == 0.7


def test_interpolation_runs_from_the_teachers_start_to_the_fine_tuned_weights():
    from convert.train_liveness import interpolate

    start = [np.zeros((2, 3), np.float32), np.full(4, 2.0, np.float32)]
    tuned = [np.ones((2, 3), np.float32), np.full(4, 6.0, np.float32)]
    for a, first, second in ((0.0, 0.0, 2.0), (0.25, 0.25, 3.0), (1.0, 1.0, 6.0)):
        w = interpolate(start, tuned, a)
        assert [x.dtype for x in w] == [np.float32, np.float32]
        np.testing.assert_allclose(w[0], first)
        np.testing.assert_allclose(w[1], second)


def test_trunk_noise_is_added_only_when_asked_and_at_the_stated_size():
    """The shipped recipe draws nothing extra (its models stay reproducible); with ``trunk_noise``
    the trunk features get N(0, sigma) per channel and the raw-crop input of a branch is untouched."""
    from convert.train_liveness import with_trunk_noise

    x = np.zeros((64, 10, 10, 4), np.float32)
    rng = np.random.default_rng(0)
    assert with_trunk_noise({}, x, rng) is x
    assert rng.random() == np.random.default_rng(0).random()  # no draw was made
    sigma = np.array([0.0, 0.1, 0.5, 2.0], np.float32)
    noisy = with_trunk_noise({"trunk_noise": sigma}, x, np.random.default_rng(1))
    np.testing.assert_allclose(noisy.reshape(-1, 4).std(0), sigma, rtol=0.05)
    raw = np.ones((64, 80, 80, 9), np.float32)
    both = with_trunk_noise({"trunk_noise": sigma}, [x, raw], np.random.default_rng(1))
    np.testing.assert_array_equal(both[0], noisy)
    assert both[1] is raw


def test_interpolation_choice_prefers_the_teacher_within_the_tie_margin():
    from convert.choose_interpolation import TIE, choose

    row = lambda cal: {"calibration": cal, "validation": 0.99, "held_out": 0.5}  # noqa: E731
    assert choose({0.0: row(0.90), 0.5: row(0.95), 1.0: row(0.93)}) == 0.5
    assert choose({0.0: row(0.90), 0.5: row(0.95 - TIE / 2), 1.0: row(0.95)}) == 0.5
    assert choose({0.25: row(0.96), 0.5: row(0.95), 1.0: row(0.96 + TIE / 2)}) == 0.25


def test_recipe_choice_prefers_trunk_noise_then_the_teacher_within_the_tie_margin():
    from convert.choose_recipe import TIE, Recipe, choose

    def folds(*aucs):
        return {d: {"held_out": a, "calibration": 0.9, "validation": 0.99} for d, a in zip("abc", aucs)}

    plain1, plain75, noise1 = Recipe(False, 1.0), Recipe(False, 0.75), Recipe(True, 1.0)
    table = {plain1: folds(0.90, 0.80, 0.70), plain75: folds(0.92, 0.82, 0.72), noise1: folds(0.91, 0.80, 0.70)}
    assert choose(table, "abc") == plain75
    table[noise1] = folds(0.92 - TIE / 2, 0.82, 0.72)
    assert choose(table, "abc") == noise1  # within the margin: the recipe with fewer int8 flips
    table[Recipe(True, 0.5)] = folds(0.92, 0.82, 0.72)
    assert choose(table, "abc") == Recipe(True, 0.5)  # then the one closer to the teacher
    table[Recipe(False, 0.25)] = {"a": {"held_out": 1.0}}  # folds missing: not eligible
    assert choose(table, "abc") == Recipe(True, 0.5)


def test_nested_choice_never_uses_the_source_it_reports():
    from convert.choose_recipe import Recipe, nested

    a, b = Recipe(False, 1.0), Recipe(False, 0.5)
    # b wins overall only through source "x"; x's own figure must come from the recipe the others choose (a)
    table = {a: {"x": {"held_out": 0.50}, "y": {"held_out": 0.90}, "z": {"held_out": 0.90}},
             b: {"x": {"held_out": 0.99}, "y": {"held_out": 0.89}, "z": {"held_out": 0.89}}}
    got = nested(table, ["x", "y", "z"])
    assert got["x"] == (a, 0.50)
    assert got["y"] == (b, 0.89) and got["z"] == (b, 0.89)
