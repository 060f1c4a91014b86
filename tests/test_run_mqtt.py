"""The main job end to end against a real broker: events, verify and check_image."""

import io
import json
import subprocess
import sys
import time

from PIL import Image

from broker import Subscriber, broker, mosquitto  # noqa: F401  (fixtures)
from edge_app.frames.sources.sample import sample_image


def test_main_job_publishes_events_and_answers_verify_and_check_image(broker, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(f'state_dir = "{tmp_path / "state"}"\n[source]\nkind = "synthetic"\nfps = 25.0\n'
                      f'[mqtt]\nreconnect_min_s = 0.1\nreconnect_max_s = 0.5\n')
    base = "edge_app/testdoor"
    sub = Subscriber(broker, [f"{base}/#"]).start()
    proc = subprocess.Popen([sys.executable, "-m", "edge_app", "run", "-c", str(config), "--device-id", "testdoor",
                             "--mqtt-host", broker.host, "--mqtt-port", str(broker.port), "--max-frames", "400"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        try:
            sub.wait_for(lambda m: any(x.topic == f"{base}/availability" and x.payload == b"online" for x in m),
                         timeout=60, what="online")
        except AssertionError:
            if proc.poll() is not None:
                raise AssertionError(f"edge-app run exited {proc.returncode}: {proc.stderr.read()[-2000:]}") from None
            raise
        events = sub.wait_for(lambda m: len([x for x in m if x.topic == f"{base}/events"]) >= 2, timeout=60,
                              what="two decision events")
        decided = [json.loads(x.payload) for x in events if x.topic == f"{base}/events"]
        assert all(e["device_id"] == "testdoor" and e["decision"] in ("live", "attack", "uncertain") for e in decided)

        sub.publish(f"{base}/cmd/verify", json.dumps({"request_id": "door-1"}), qos=1)
        replies = sub.wait_for(lambda m: any(x.topic == f"{base}/verify/result" for x in m), timeout=20, what="verify")
        verify = json.loads([x for x in replies if x.topic == f"{base}/verify/result"][-1].payload)
        assert verify["request_id"] == "door-1"
        assert json.dumps(verify).count('"decision"') >= 1

        buf = io.BytesIO()
        Image.fromarray(sample_image("live")).save(buf, "JPEG", quality=90)
        sub.publish(f"{base}/cmd/check_image", buf.getvalue(), qos=1)
        sub.publish(f"{base}/cmd/check_image", b"not an image at all", qos=1)
        replies = sub.wait_for(lambda m: len([x for x in m if x.topic == f"{base}/check_image/result"]) >= 2,
                               timeout=60, what="two check_image answers")
        answers = [json.loads(x.payload) for x in replies if x.topic == f"{base}/check_image/result"]
        verdicts = [json.dumps(a) for a in answers]
        assert any('"authentic"' in v or '"manipulated"' in v for v in verdicts), verdicts
        assert any('"error"' in v for v in verdicts), verdicts
    finally:
        proc.terminate()
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        sub.stop()
    assert proc.returncode == 0, err
    time.sleep(0.2)
    assert any(x.topic == f"{base}/availability" and x.payload == b"offline" for x in sub.messages())
