import shutil

import pytest

from edge_app.hub.local_broker import find_or_start, free_port, reachable


@pytest.mark.skipif(not (shutil.which("mosquitto") or shutil.which("/usr/sbin/mosquitto")), reason="mosquitto not installed")
def test_demo_starts_a_private_broker_when_none_answers_and_stops_it():
    port = free_port()
    assert not reachable("127.0.0.1", port)
    broker = find_or_start("127.0.0.1", port)
    try:
        assert broker is not None and broker.process is not None
        assert reachable(broker.host, broker.port)
        # a second demo finds that broker instead of starting another
        again = find_or_start(broker.host, broker.port)
        assert again.port == broker.port and again.process is None
    finally:
        broker.stop()
    assert not reachable(broker.host, broker.port)
