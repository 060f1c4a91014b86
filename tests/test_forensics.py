"""Image forensics: the shipped int8 model through the real interpreter, real JPEGs."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge_app.cli import main
from edge_app.forensics.analyzer import MODEL_NAME, load_analyzer
from edge_app.forensics.check import check_image, check_image_bytes
from edge_app.forensics.features import relative_features
from edge_app.forensics.jpeg_quality import estimate_jpeg_quality
from edge_app.forensics.patches import assemble_heatmap, patch_grid
from edge_app.forensics.scores import aggregate
from edge_app.tflite_model import ModelError

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "models"
DATASETS = Path(os.environ.get("EDGE_APP_DATASETS", REPO.parent / "shared" / "datasets"))
CASIA = DATASETS / "casia1"


@pytest.fixture(scope="module")
def analyzer():
    return load_analyzer(MODELS)


@pytest.fixture(scope="module")
def casia_test_items():
    if not (CASIA / "manifest.csv").is_file():
        pytest.skip(f"CASIA v1 not found at {CASIA} (set EDGE_APP_DATASETS)")
    from convert.forensics_data import split_items

    items, _ = split_items()
    return [i for i in items if i.split == "test"]


def _jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height, with almost no pixel data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


# --------------------------------------------------------------------------- model


def test_shipped_model_loads_verified_with_its_calibration(analyzer):
    meta = analyzer.model.metadata
    assert meta["task"] == "image_forensics"
    assert meta["input"]["dtype"] == "int8" and meta["input"]["shape"] == [1, 64, 64, 4]
    assert meta["input"]["patch"] == {**meta["input"]["patch"], "size": 64, "stride": 32}
    assert meta["input"]["recompress_quality"] == analyzer.recompress_quality
    assert 0 < analyzer.threshold < 1 and 0 < analyzer.pixel_threshold < 1
    assert meta["training_data"]["license"] == "CASIA v1: research use"
    assert "false_alarms_by_kind" in meta["evaluation"] and "operating_point" in meta
    det = meta["detectors"]
    assert det["block_copy_move"]["threshold_area"] == pytest.approx(analyzer.block_area)
    assert det["keypoint_copy_move"]["threshold_area"] == pytest.approx(analyzer.keypoint_area)
    assert det["cnn"]["in_score"] == analyzer.cnn_in_score and det["cnn"]["aggregation"] == analyzer.aggregation
    assert analyzer.aggregation.startswith(("qtop", "p"))  # a statistic that does not grow with the image
    # the float twin carries the same calibration
    flt = json.loads((MODELS / f"{MODEL_NAME}_float.json").read_text())
    assert flt["threshold"] == meta["threshold"]


def test_int8_model_runs_whole_in_one_xnnpack_partition(analyzer):
    from edge_app.interpreters import backend_name, delegate_partitions

    if backend_name() != "litert":
        pytest.skip("tflite-runtime does not hand int8 graphs to XNNPACK")
    assert delegate_partitions(analyzer.model.interpreter) == (1, True)


def test_a_modified_model_file_is_refused(tmp_path):
    for suffix in (".tflite", ".json"):
        shutil.copy(MODELS / f"{MODEL_NAME}{suffix}", tmp_path / f"{MODEL_NAME}{suffix}")
    data = bytearray((tmp_path / f"{MODEL_NAME}.tflite").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / f"{MODEL_NAME}.tflite").write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256"):
        load_analyzer(tmp_path)


# --------------------------------------------------------------------------- pieces


def test_patch_grid_covers_the_image_on_the_jpeg_block_grid():
    coords = patch_grid(256, 384, 64, 32)
    assert len(coords) == 7 * 11
    odd = patch_grid(250, 301, 64, 32)
    assert all(y % 8 == 0 and x % 8 == 0 for y, x in odd)
    heat = assemble_heatmap(np.linspace(0, 1, len(odd)), odd, 250, 301, 64)
    assert heat.shape == (250, 301) and np.isfinite(heat).all()
    assert aggregate(np.array([0.1, 0.9, 0.5, 0.7]), "top2") == pytest.approx(0.8)


def test_share_aggregation_does_not_grow_with_the_image_size():
    rng = np.random.default_rng(4)
    small = rng.beta(2, 5, 77)  # patch scores of a 384x256 photo
    large = np.concatenate([small + rng.normal(0, 0.01, 77) for _ in range(10)])  # the same, 10x the patches
    assert aggregate(large, "qtop5") == pytest.approx(aggregate(small, "qtop5"), abs=0.03)
    assert aggregate(large, "p95") == pytest.approx(aggregate(small, "p95"), abs=0.03)
    assert aggregate(large, "top3") > aggregate(small, "top3")  # the v0.4.0 statistic did grow


def test_calibrated_scores_are_one_half_at_their_thresholds():
    from edge_app.forensics.scores import calibrated, calibrated_prob

    assert calibrated(0.004, 0.004) == pytest.approx(0.5) and calibrated(0.0, 0.004) == 0.0
    assert calibrated(0.01, 0.004) > 0.5 > calibrated(0.002, 0.004)
    assert float(calibrated_prob(0.93, 0.93)) == pytest.approx(0.5)
    assert float(calibrated_prob(0.97, 0.93)) > 0.5 > float(calibrated_prob(0.9, 0.93))


def test_region_masks_survive_run_length_coding():
    from edge_app.forensics.results import mask_rle, rle_decode

    m = np.zeros((300, 500), bool)
    m[40:90, 100:220] = True
    m[0:3, 0:5] = True  # a run of 1s at the start
    rle = mask_rle(m, max_side=256)
    grid = rle_decode(rle)
    assert rle["cell"] == 2 and rle["size"] == [250, 150] and rle["counts"][0] == 0
    assert grid.shape == (150, 250) and grid[20:45, 50:110].all() and grid.sum() == 25 * 60 + 2 * 3
    assert sum(rle["counts"]) == 250 * 150


def test_contrast_aggregation_ignores_a_level_the_whole_image_shares():
    uniform_low, uniform_high = np.full(77, 0.2), np.full(77, 0.9)
    assert aggregate(uniform_low, "ctop3") == pytest.approx(0.5)
    assert aggregate(uniform_high, "ctop3") == pytest.approx(0.5)
    one_region = np.full(77, 0.2)
    one_region[:3] = 0.9
    assert aggregate(one_region, "ctop3") > 0.9


def test_relative_features_divide_away_the_image_level():
    rng = np.random.default_rng(3)
    feats = np.empty((128, 192, 4), np.float32)
    feats[..., :3] = rng.uniform(0.0, 0.1, (128, 192, 3))
    feats[..., 3] = rng.normal(0.0, 0.1, (128, 192))
    feats[32:64, 40:80, :3] *= 3  # a region with a different error level
    rel = relative_features(feats)
    assert rel.shape == feats.shape and rel.dtype == np.float32
    assert rel.min() >= -1 and rel.max() <= 1
    # the same image at twice the level (another compression history) gives the same input
    assert np.allclose(relative_features(feats * 2), rel, atol=1e-5)
    assert rel[32:64, 40:80, 0].mean() > 2 * rel[80:, 100:, 0].mean()


def test_jpeg_quality_is_estimated_from_the_quantization_tables():
    rgb = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    for q in (60, 75, 90):
        with Image.open(io.BytesIO(_jpeg(rgb, q))) as im:
            assert estimate_jpeg_quality(im.quantization) == (q, True)


# --------------------------------------------------------------------------- behaviour on real images


def test_held_out_casia_tampered_images_score_higher_than_authentic(analyzer, casia_test_items):
    au = sorted((i for i in casia_test_items if i.label == 0), key=lambda i: i.name)[::16][:10]
    tp = sorted((i for i in casia_test_items if i.label == 1), key=lambda i: i.name)[::18][:10]
    scores = {}
    for group, its in (("authentic", au), ("tampered", tp)):
        results = [check_image(i.path, analyzer)[0] for i in its]
        assert all(r["verdict"] in ("authentic", "manipulated") for r in results)
        scores[group] = np.mean([r["score"] for r in results])
    assert scores["tampered"] > scores["authentic"], scores


def test_the_cnn_lights_up_a_self_made_splice_inside_its_mask(analyzer, casia_test_items):
    from convert.forensics_data import load_rgb

    au = sorted((i for i in casia_test_items if i.label == 0), key=lambda i: i.name)
    target = load_rgb(au[0].path)
    donor = load_rgb(au[len(au) // 2].path)
    h, w = target.shape[:2]
    mask = np.zeros((h, w), bool)
    y0, x0, bh, bw = 83, 141, 90, 110  # off the 8x8 grid, like a hand-made paste
    mask[y0:y0 + bh, x0:x0 + bw] = True
    fake = target.copy()
    fake[mask] = donor[13:13 + bh, 27:27 + bw].reshape(-1, 3)
    from edge_app.forensics.loading import open_image

    img = open_image(_jpeg(fake, 90), 10**8, 10**8, name="splice")
    ev = analyzer.evidence(img.rgb, cnn=True)  # the CNN runs whether or not it is in the score
    heat = assemble_heatmap(ev.patch_scores, ev.coords, h, w, analyzer.patch)
    assert heat[mask].mean() > heat[~mask].mean()


def test_a_copy_move_is_caught_and_drawn_through_the_device_path(analyzer, casia_test_items):
    from convert.forensics_data import load_rgb
    from edge_app.forensics.results import rle_decode

    au = sorted((i for i in casia_test_items if i.label == 0), key=lambda i: i.name)
    rgb = next(r for r in map(lambda i: load_rgb(i.path), au)
               if r.shape[:2] == (256, 384) and r[113:153, 129:177].std() > 25)
    fake = rgb.copy()
    fake[150:190, 230:278] = rgb[113:153, 129:177]  # shift (37, 101), off the 8x8 grid
    result, _, analysis = check_image(_jpeg(fake, 90), analyzer, name="copy-move")
    cm = result["evidence"]["copy_move"]
    assert cm["shift"] == [37, 101] and cm["verified_area"] > analyzer.block_area, cm
    assert result["verdict"] == "manipulated" and result["score"] >= cm["score"] >= analyzer.threshold
    assert (analysis.heatmap[150:190, 230:278] >= analysis.pixel_threshold).mean() > 0.6
    region = next(r for r in result["regions"] if r["detector"] == "block_copy_move")
    x0, y0, x1, y1 = region["bbox"]
    assert x0 <= 135 and y0 <= 119 and x1 >= 272 and y1 >= 184  # source and copy, to a few pixels
    grid = rle_decode(region["mask_rle"])
    assert grid.shape == (128, 192) and region["mask_rle"]["cell"] == 2 and grid[80:90, 120:134].mean() > 0.9
    # the untouched photo carries no such evidence
    clean, _, _ = check_image(_jpeg(rgb, 90), analyzer, name="clean")
    assert clean["evidence"]["copy_move"]["verified_area"] == 0


def test_a_scaled_and_rotated_copy_is_caught_by_keypoints_through_the_device_path(analyzer, casia_test_items):
    import cv2

    from convert.forensics_data import load_rgb

    au = sorted((i for i in casia_test_items if i.label == 0), key=lambda i: i.name)
    # a photo with texture where the copy comes from (disc of radius 34 around x=92, y=128)
    rgb = next(r for r in map(lambda i: load_rgb(i.path), au)
               if r.shape[:2] == (256, 384) and r[94:162, 58:126].std() > 25)
    m = cv2.getRotationMatrix2D((92, 128), 20, 1.25)  # turned 20 degrees, 1.25x, then moved
    m[:, 2] += (198, 22)
    warped = cv2.warpAffine(rgb, m, (384, 256), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    disc = np.zeros((256, 384), np.uint8)
    cv2.circle(disc, (290, 150), 34, 1, thickness=-1)
    fake = rgb.copy()
    fake[disc > 0] = warped[disc > 0]
    result, _, analysis = check_image(_jpeg(fake, 90), analyzer, name="scaled copy")
    kp = result["evidence"]["keypoint_copy_move"]
    assert kp["scale"] == pytest.approx(1.25, abs=0.03) and abs(kp["rotation_deg"]) == pytest.approx(20, abs=2), kp
    assert result["evidence"]["copy_move"]["verified_area"] == 0  # block matching cannot see it
    assert result["verdict"] == "manipulated" and result["score"] >= kp["score"] >= analyzer.threshold
    assert (analysis.heatmap[disc > 0] >= analysis.pixel_threshold).mean() > 0.5
    clean, _, _ = check_image(_jpeg(rgb, 90), analyzer, name="clean")
    assert clean["evidence"]["keypoint_copy_move"]["verified_area"] == 0


def test_real_casia_copy_moves_give_copy_move_evidence(analyzer, casia_test_items):
    """Held-out CASIA copy-moves made by hand with no rotation or scaling (ops NNN)."""
    plain = sorted((i for i in casia_test_items if i.kind == "copy-move" and i.extra.get("ops") == "NNN"),
                   key=lambda i: i.name)[::6][:10]
    assert len(plain) == 10
    results = [check_image(i.path, analyzer)[0]["evidence"] for i in plain]
    found = [max(e["copy_move"]["score"], e["keypoint_copy_move"]["score"]) >= 0.5 for e in results]
    assert sum(found) >= 6, found


# --------------------------------------------------------------------------- CLI and bad input


@pytest.fixture
def photo_dir(tmp_path, casia_test_items):
    d = tmp_path / "photos"
    d.mkdir()
    for it in sorted(casia_test_items, key=lambda i: i.name)[::60][:3]:
        shutil.copy(it.path, d / it.path.name)
    rgb = np.asarray(Image.open(d / sorted(os.listdir(d))[0]).convert("RGB"))
    Image.fromarray(rgb).save(d / "lossless.png")  # no JPEG history
    (d / "notes.jpg").write_text("this is not an image\n")
    good = (d / sorted(os.listdir(d))[0]).read_bytes()
    (d / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (d / "huge.png").write_bytes(_png_header_only(60000, 60000))
    (d / "tiny.jpg").write_bytes(_jpeg(np.zeros((20, 30, 3), np.uint8)))
    return d


def test_cli_writes_csv_and_heatmaps_and_reports_bad_files(photo_dir, tmp_path, capsys):
    out_csv, heat_dir = tmp_path / "f.csv", tmp_path / "heat"
    # the run goes on past bad files; a missing path makes the exit status 1
    assert main(["forensics", str(photo_dir), str(tmp_path / "missing.jpg"), "--csv", str(out_csv),
                 "--heatmap", str(heat_dir)]) == 1
    rows = list(csv.DictReader(out_csv.open()))
    assert list(rows[0]) == ["path", "score", "verdict"]
    by_name = {Path(r["path"]).name: r for r in rows}
    assert len(rows) == 9
    for name in ("notes.jpg", "truncated.jpg", "huge.png", "tiny.jpg", "missing.jpg"):
        assert by_name[name]["verdict"] == "error" and by_name[name]["score"] == ""
    analysed = [r for r in rows if r["verdict"] != "error"]
    assert len(analysed) == 4 and all(r["verdict"] in ("authentic", "manipulated") for r in analysed)
    assert all(0 <= float(r["score"]) <= 1 for r in analysed)
    pngs = sorted(p.name for p in heat_dir.iterdir() if p.name.endswith("_forensics.png"))
    masks = sorted(p.name for p in heat_dir.iterdir() if p.name.endswith("_mask.png"))
    assert len(pngs) == 4 and "lossless_forensics.png" in pngs and len(masks) == 4
    with Image.open(heat_dir / pngs[0]) as im:
        assert im.width > 2 * 256  # image | ELA side by side
    printed = capsys.readouterr().out
    lines = {Path(line.split("\t")[0]).name: line for line in printed.strip().splitlines()}
    assert "not an image" in lines["notes.jpg"]
    assert "truncated" in lines["truncated.jpg"]
    assert "limit" in lines["huge.png"] and "refused" in lines["huge.png"]
    assert "at least 64x64" in lines["tiny.jpg"]
    assert "no such file" in lines["missing.jpg"]
    assert lines["lossless.png"].split("\t")[1] in ("authentic", "manipulated")


def test_oversize_policy_from_config(tmp_path, analyzer):
    rgb = np.random.default_rng(1).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    data = _jpeg(rgb, 85)
    cfg_down = tmp_path / "down.toml"
    cfg_down.write_text("[forensics]\nanalysis_max_pixels = 100000\n")
    cfg_refuse = tmp_path / "refuse.toml"
    cfg_refuse.write_text("[forensics]\nanalysis_max_pixels = 100000\noversize = \"refuse\"\n")
    from edge_app.config import load_config

    down = check_image_bytes(data, config=load_config(cfg_down), analyzer=analyzer)
    assert down["verdict"] != "error" and down["width"] == 640 and down["analyzed_size"][0] < 640
    assert any("downscaled" in n for n in down["notes"])
    refused = check_image_bytes(data, config=load_config(cfg_refuse), analyzer=analyzer)
    assert refused["verdict"] == "error" and "analysis limit" in refused["error"]


def test_check_image_bytes_never_raises(analyzer):
    for bad in (b"", b"garbage" * 100, _png_header_only(60000, 60000), _jpeg(np.zeros((64, 64, 3), np.uint8))[:200],
                "not bytes"):
        r = check_image_bytes(bad, analyzer=analyzer)
        assert r["verdict"] == "error" and r["error"] and r["score"] is None
    r = check_image_bytes(b"\xff\xd8" + b"\0" * 50, models_dir="/nonexistent/models")
    assert r["verdict"] == "error" and "error" in r


def test_check_image_bytes_on_a_real_jpeg(analyzer, casia_test_items):
    item = sorted((i for i in casia_test_items if i.label == 1), key=lambda i: i.name)[0]
    r = check_image_bytes(item.path.read_bytes(), analyzer=analyzer)
    assert r["verdict"] in ("authentic", "manipulated")
    assert (r["width"], r["height"]) in ((384, 256), (256, 384))
    assert r["source"]["format"] == "JPEG" and r["source"]["jpeg_quality_estimate"]
    hm = r["heatmap"]
    assert set(hm) >= {"bbox", "suspect_fraction", "regions", "threshold"}
    json.dumps(r)  # JSON-ready for MQTT
    # the default path loads the shipped model itself
    r2 = check_image_bytes(item.path.read_bytes())
    assert r2["score"] == pytest.approx(r["score"])


def test_cli_json_carries_regions_and_an_authentic_verdict_draws_nothing(tmp_path, capsys, casia_test_items):
    from convert.forensics_data import load_rgb

    au = sorted((i for i in casia_test_items if i.label == 0), key=lambda i: i.name)
    rgb = next(r for r in map(lambda i: load_rgb(i.path), au)
               if r.shape[:2] == (256, 384) and r[113:153, 129:177].std() > 25)
    fake = rgb.copy()
    fake[150:190, 230:278] = rgb[113:153, 129:177]
    big_clean = np.asarray(Image.fromarray(rgb).resize((640, 427), Image.Resampling.LANCZOS))
    (tmp_path / "copy.jpg").write_bytes(_jpeg(fake, 92))
    (tmp_path / "clean.jpg").write_bytes(_jpeg(big_clean, 92))
    heat = tmp_path / "heat"
    assert main(["forensics", str(tmp_path / "copy.jpg"), str(tmp_path / "clean.jpg"), "--json",
                 "--heatmap", str(heat)]) == 0
    rows = {Path(json.loads(line)["path"]).name: json.loads(line) for line in capsys.readouterr().out.splitlines()}
    copy, clean = rows["copy.jpg"], rows["clean.jpg"]
    assert copy["verdict"] == "manipulated" and copy["regions"]
    assert {"detector", "bbox", "area_fraction", "mask_rle"} <= set(copy["regions"][0])
    with Image.open(copy["mask_png"]) as im:
        m = np.asarray(im) > 0
    assert m.shape == (256, 384) and m[160:180, 240:268].mean() > 0.9 and m.mean() < 0.2
    if clean["verdict"] == "authentic":
        assert clean["regions"] == []
        with Image.open(clean["mask_png"]) as im:
            assert not np.asarray(im).any()
        with Image.open(clean["heatmap_png"]) as im:
            panel = np.asarray(im.convert("RGB"))
        # the left panel is the photo itself: nothing tinted, nothing outlined
        with Image.open(tmp_path / "clean.jpg") as im:
            decoded = np.asarray(im.convert("RGB")).astype(int)
        top = next(y for y in range(panel.shape[0]) if np.array_equal(panel[y, :640], decoded[0]))
        assert np.array_equal(panel[top:top + 427, :640], decoded)
    assert copy["heatmap_png"].endswith("_forensics.png")


def test_a_large_photo_reports_progress_and_what_the_size_guard_did(tmp_path, capsys):
    rng = np.random.default_rng(9)
    base = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
    big = np.asarray(Image.fromarray(base).resize((2400, 1800), Image.Resampling.BICUBIC))
    (tmp_path / "big.jpg").write_bytes(_jpeg(big, 90))
    cfg = tmp_path / "c.toml"
    cfg.write_text("[forensics]\nanalysis_max_pixels = 1000000\n")
    assert main(["forensics", str(tmp_path / "big.jpg"), "--json", "-c", str(cfg)]) == 0
    out = capsys.readouterr()
    result = json.loads(out.out)
    assert "2400x1800 (4.3 MP), analysing" in out.err and "copy-move search" in out.err
    assert (result["width"], result["height"]) == (2400, 1800)
    assert result["analyzed_size"][0] * result["analyzed_size"][1] <= 1_000_000
    assert any(n.startswith("size guard: 2400x1800") and "downscaled to" in n for n in result["notes"])


def test_the_original_coordinates_of_a_transformed_point_follow_pillow():
    """``_centre_in_original`` inverts the editor transforms of the self-made sets: a bright dot
    turned or rescaled by Pillow lands where its original coordinates map."""
    from convert.forensics_data import _centre_in_original

    h, w = 100, 200
    dot = np.zeros((h, w, 3), np.uint8)
    dot[34:39, 139:144] = 255  # centre (36, 141)
    for how, out in (("rotate 30", Image.fromarray(dot).rotate(30, Image.Resampling.BICUBIC)),
                     ("rotate -20", Image.fromarray(dot).rotate(-20, Image.Resampling.BICUBIC)),
                     ("scale 1.30", Image.fromarray(dot).resize((260, 130), Image.Resampling.BICUBIC))):
        a = np.asarray(out)[..., 0].astype(float)
        ys, xs = np.nonzero(a > 60)
        y, x = _centre_in_original(how, (h, w), a.shape, float(ys.mean()), float(xs.mean()))
        assert abs(y - 36.5) < 1.5 and abs(x - 141.5) < 1.5, (how, y, x)


def test_separate_copies_do_not_land_on_their_own_source(casia_test_items):
    """With ``separate`` a scaled or rotated copy-move keeps its source: the source (in the original's
    coordinates) lies at least half the region's size from where the copy is pasted. Without it (the
    rule the CNN's training data was drawn with) some resampled copies overwrite their own source."""
    from convert import forensics_data as fd

    rgb = fd.load_rgb(next(i.path for i in casia_test_items if i.label == 0))
    gaps = {}
    for separate in (True, False):
        rng = np.random.default_rng(3)
        gaps[separate] = []
        for _ in range(80):
            made = fd.make_manipulation(rgb, None, rng, separate=separate)
            if made is None or made[2]["transform"] == "none":
                continue
            info = made[2]
            (sy, sx), (py, px) = info["source_centre"], info["paste_centre"]
            gaps[separate].append((abs(sy - py) + abs(sx - px)) / (info["region_size"] // 2))
    assert len(gaps[True]) >= 15 and len(gaps[False]) >= 15
    assert min(gaps[True]) >= 0.99, min(gaps[True])  # rounding of the centres to 0.1 px
    assert min(gaps[False]) < 0.99
