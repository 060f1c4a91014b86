# The two commands a newcomer needs: `make demo` and `make test`.
.PHONY: setup demo test test-hub

setup:
	scripts/setup.sh test

# The main job on the built-in sample: live face, printed-photo attack, empty scene;
# one readable line per decision and a tally, events published to a local broker (found or
# started; the run says how to watch them with mosquitto_sub). JSON lines: add --print-events.
demo: setup
	.venv/bin/edge-app run --local-broker --max-frames 96

test: setup
	.venv/bin/python -m pytest -q

# Opt-in, not part of `make test` or CI: installs Home Assistant 2024.3.3 (the newest on
# Python 3.11) into .hub/venv and runs edge_app against it (tests/hub/).
test-hub: setup
	scripts/setup_hub.sh
	EDGE_APP_TEST_HUB=1 .venv/bin/python -m pytest -q -s --basetemp=.hub/run tests/hub
