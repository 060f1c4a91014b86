# The two commands a newcomer needs: `make demo` and `make test`.
.PHONY: setup demo test

setup:
	scripts/setup.sh test

# The main job on the built-in sample: live face, printed-photo attack, empty scene;
# events printed as JSON lines and published to a local broker (found or started).
demo: setup
	.venv/bin/edge-app run --local-broker --max-frames 96 --print-events

test: setup
	.venv/bin/python -m pytest -q
