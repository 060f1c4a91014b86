import pytest

from edge_app.config import DecisionConfig
from edge_app.liveness.decision import DecisionMaker, Observation, decide

THR = 0.5


def obs(score, box=(100, 100, 80, 80), reason=""):
    return Observation(box, score, {"m": score} if score is not None else {}, reason=reason)


def test_live_needs_enough_valid_frames_above_threshold():
    assert decide([obs(0.9)] * 5, THR, 3, 0.5).decision == "live"
    assert decide([obs(0.9)] * 2, THR, 3, 0.5).decision == "uncertain"
    assert decide([obs(0.1)] * 5, THR, 3, 0.5).decision == "attack"
    # the margin is in logit units: logit(0.4) = -0.41 is inside 0.5 of logit(0.5) = 0
    assert decide([obs(0.4)] * 5, THR, 3, 0.5).decision == "uncertain"
    assert decide([obs(0.37)] * 5, THR, 3, 0.5).decision == "attack"


def test_a_failed_frame_in_the_window_blocks_live():
    window = [obs(0.99)] * 4 + [obs(None, reason="stale frame (2.00 s old)")]
    d = decide(window, THR, 3, 0.05)
    assert d.decision == "uncertain" and "stale frame" in d.reason


def test_only_failed_frames_give_error():
    d = decide([obs(None, reason="model error: boom")] * 5, THR, 3, 0.05)
    assert d.decision == "error" and "boom" in d.reason and d.score is None


def test_maker_aggregates_a_track_over_its_window_and_emits_once_per_window():
    maker = DecisionMaker(DecisionConfig(window=5, min_frames=3), THR)
    out = []
    for i in range(10):
        out += maker.frame([obs(0.9, box=(100 + i, 100, 80, 80))])
    assert [d.decision for d in out] == ["live", "live"]
    assert out[0].track_id == out[1].track_id and out[0].frames == 5


def test_a_different_face_is_a_different_track():
    maker = DecisionMaker(DecisionConfig(window=2, min_frames=2), THR)
    out = []
    for _ in range(2):
        out += maker.frame([obs(0.9, box=(0, 0, 50, 50)), obs(0.1, box=(300, 300, 50, 50))])
    assert sorted(d.decision for d in out) == ["attack", "live"]
    assert len({d.track_id for d in out}) == 2


def test_no_face_is_reported_once_when_the_scene_empties():
    maker = DecisionMaker(DecisionConfig(window=2, min_frames=1, lost_after_frames=2), THR)
    out = []
    for _ in range(2):
        out += maker.frame([obs(0.9)])
    for _ in range(6):
        out += maker.frame([])
    assert [d.decision for d in out] == ["live", "no_face"]


def test_camera_failure_is_error_and_restarts_the_window():
    maker = DecisionMaker(DecisionConfig(window=3, min_frames=3), THR)
    maker.frame([obs(0.9)])
    maker.frame([obs(0.9)])
    failures = maker.failure("camera unplugged") + maker.failure("camera unplugged")
    assert [d.decision for d in failures] == ["error"]  # once per run of failures
    # the two frames before the failure no longer count towards a live decision
    assert maker.frame([obs(0.9)]) == []
    assert maker.frame([obs(0.9)]) == []
    assert [d.decision for d in maker.frame([obs(0.9)])] == ["live"]


@pytest.mark.parametrize("score", [None, 0.0, 0.2, 0.49])
def test_nothing_below_threshold_or_failed_is_ever_live(score):
    for n in range(1, 6):
        d = decide([obs(score, reason="x")] * n, THR, 1, 0.0)
        assert d.decision != "live"
