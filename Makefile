# Two commands on a fresh machine: `make run` and `make test` (see README).
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
DURATION ?= 0
ARGS ?=
PYTEST_ARGS ?=
# YOLO=0: leave out the detector's extra (torch, Ultralytics: ~6 GB); its tests then skip.
YOLO ?= 1
export YOLO
# The venv, then the colcon install; PYTHONSAFEPATH keeps the source tree (which has
# no generated .msg) from shadowing the installed package when run from the repo root.
# Another sourced workspace (COLCON_PREFIX_PATH, PYTHONPATH) must not leak into this one.
ENV := unset COLCON_PREFIX_PATH AMENT_PREFIX_PATH CMAKE_PREFIX_PATH PYTHONPATH && \
	source .venv/bin/activate && source install/setup.bash && export PYTHONSAFEPATH=1 &&

.PHONY: setup run test lint bench bench-jitter bench-yolo bench-webrtc bench-remote bench-link bench-stereo dashboard clean
setup:
	@bash tools/bootstrap.sh

run: setup
	@$(ENV) python -m vr_stream_ros.graph.runner --duration $(DURATION) $(ARGS)

lint: setup
	@$(ENV) ruff check vr_stream_ros launch test tools

test: setup lint
	@$(ENV) python -m pytest -q -rs --durations=15 test $(PYTEST_ARGS)

# docs/reference.md from the parameter/topic specs, launch arguments and msg/ (a test checks it).
.PHONY: reference
reference: setup
	@$(ENV) python -m vr_stream_ros.graph.reference

bench: setup
	@$(ENV) python -m vr_stream_ros.bench.pipeline

bench-jitter: setup
	@$(ENV) python -m vr_stream_ros.bench.jitter

bench-yolo: setup
	@$(ENV) python -m vr_stream_ros.bench.detector $(ARGS)

bench-webrtc: setup
	@$(ENV) python -m vr_stream_ros.bench.webrtc $(ARGS)

# Two network namespaces (root): video p99 with and without a remote image_raw/compressed
# subscriber, the compressed topic's bandwidth, local vs remote detection lag.
bench-remote: setup
	@$(ENV) python -m vr_stream_ros.bench.remote $(ARGS)

# Every loss-recovery variant against the same seeded impaired links (loopback relay).
bench-link: setup
	@$(ENV) python -m vr_stream_ros.bench.link $(ARGS)

# Mono 1280x720@60 and stereo 2x1280x720@60 (top_bottom) side by side: latency, loss, eye skew.
bench-stereo: setup
	@$(ENV) python -m vr_stream_ros.bench.stereo $(ARGS)

# Reliability (issue 16): the full graph for SOAK_S seconds (sample table, memory budget,
# JSON last line); kill and SIGSTOP each node in turn (CHAOS_ROUNDS rounds). Not in `make test`.
SOAK_S ?= 600
CHAOS_ROUNDS ?= 1
.PHONY: soak chaos soak-memory
soak: setup
	@$(ENV) python -m vr_stream_ros.bench.soak --seconds $(SOAK_S) $(ARGS)

soak-memory: setup
	@$(ENV) python -m vr_stream_ros.bench.soak --memory-matrix $(ARGS)

chaos: setup
	@$(ENV) python -m vr_stream_ros.bench.chaos --rounds $(CHAOS_ROUNDS) $(ARGS)

dashboard: setup
	@$(ENV) python -m vr_stream_ros.nodes.dashboard_node $(ARGS)

clean:
	rm -rf build install log

# Hostile input on every listening surface, 100k inputs each in process (make test runs
# fewer: see each test file's fuzz_n default); FUZZ_N= to change.
.PHONY: fuzz
FUZZ_N ?= 100000
fuzz: setup
	@$(ENV) FUZZ_N=$(FUZZ_N) python -m pytest -q -s --timeout 1800 \
		test/test_fuzz_http.py test/test_fuzz_rtp.py test/test_fuzz_params.py $(PYTEST_ARGS)
