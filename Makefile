# Everything runs from a local .venv that is created and filled on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ENV ?= ALE/Breakout-v5
ARGS ?=
EP ?=
SRC ?=
ID ?=
OUT ?=
STUDY ?=

.PHONY: play list check test bench lint uploader replay stress clean export-minari export-video constraints serve view

TEST_ENV := SDL_VIDEODRIVER=dummy SDL_AUDIODRIVER=dummy HF_HUB_DISABLE_XET=1 HF_HUB_OFFLINE=0

# Pinned to constraints.txt (the versions the suite last passed with), then `pip check`.
# The one warning filter silences setuptools' unconditional "Editable installation" notice (InformationOnly,
# printed for every package-dir mapped editable install); real setuptools warnings still show.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	PYTHONWARNINGS="ignore:Editable installation" PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 $(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,ray,web,torch]'
	$(BIN)/python -m pip check
	@touch $(STAMP)

# After upgrading packages in .venv and a green `make test`: record the versions it passed with.
constraints: $(STAMP)
	{ sed -n '/^#/p' constraints.txt; $(BIN)/python -m pip freeze --all --exclude-editable | grep -iv '^gymrec\|^pip=='; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

play: $(STAMP)
	$(BIN)/gymrec-play $(ENV) $(ARGS)

list: $(STAMP)
	$(BIN)/gymrec-play --list $(ARGS)

uploader: $(STAMP)
	$(BIN)/gymrec-uploader $(ARGS)

replay: $(STAMP)
	@if [ -z "$(EP)$(ARGS)" ]; then echo "make replay: say which episode: make replay EP=<id> or make replay ARGS=--all" >&2; exit 2; fi
	$(BIN)/gymrec-replay $(EP) $(ARGS)

# make serve STUDY=docs/study.example.toml   (a browser study; ARGS="--host 0.0.0.0 --port 8000")
serve: $(STAMP)
	@if [ -z "$(STUDY)" ]; then echo "make serve: say which study file: make serve STUDY=docs/study.example.toml" >&2; exit 2; fi
	$(BIN)/gymrec-serve $(STUDY) $(ARGS)

# make view SRC=<spool|dataset dir|owner/name>   (browse episodes in the browser)
view: $(STAMP)
	@if [ -z "$(SRC)" ]; then echo "make view: say what to browse: make view SRC=<spool dir|dataset dir|owner/name>" >&2; exit 2; fi
	$(BIN)/gymrec-view $(SRC) $(ARGS)

# make export-minari SRC=<spool|dataset dir|owner/name> ID=gymrec/breakout-v0 ARGS="--env ALE/Breakout-v5"
export-minari: $(STAMP)
	$(BIN)/gymrec-export minari $(SRC) $(ID) $(ARGS)

# make export-video EP=<id> OUT=ep.mp4 ARGS=--lossless   (or ARGS="--all videos/")
export-video: $(STAMP)
	$(BIN)/gymrec-export video $(EP) $(OUT) $(ARGS)

# The working loop (< 2 min on 2 cores): the import contracts, then every test not marked slow
# (tests/conftest.py marks the end-to-end modules slow), in make test's two parts.
check: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/python -m pip check
	$(TEST_ENV) $(BIN)/python -m pytest -q -n 2 --dist loadfile -m "not slow and not serial" $(ARGS) || [ $$? -eq 5 ]
	$(TEST_ENV) $(BIN)/python -m pytest -q -m "not slow and serial" $(ARGS) || [ $$? -eq 5 ]

# Everything, what CI runs. tests/sysdeps.sh installs the system packages some suites use (as root
# with apt-get), or says in one line per suite which will skip and why.
# Two parts: everything not real-time on two xdist workers (most tests wait on subprocesses), then the
# real-time modules alone (tests/conftest.py SERIAL_MODULES). Exit 5 is "nothing selected" (e.g. ARGS
# naming only a module of the other part). The slowest of each part go to CI's log: the 15-min budget.
test: $(STAMP)
	@./tests/sysdeps.sh
	$(TEST_ENV) $(BIN)/python -m pytest -q -n 2 --dist loadfile -m "not serial" --durations=10 $(ARGS) || [ $$? -eq 5 ]
	$(TEST_ENV) $(BIN)/python -m pytest -q -m serial --durations=10 $(ARGS) || [ $$? -eq 5 ]

bench: $(STAMP)
	SDL_VIDEODRIVER=dummy SDL_AUDIODRIVER=dummy HF_HUB_DISABLE_XET=1 $(BIN)/python -m bench $(ARGS)

# The reliability suites at full size (50 kills, 50 power cuts, more races); make test runs them smaller.
# Each passing suite stores its figures in tests/stress_results.json; docs/reliability.md is rendered from it.
stress: $(STAMP)
	GYMREC_STRESS=1 GYMREC_STRESS_RESULTS=tests/stress_results.json \
		SDL_VIDEODRIVER=dummy SDL_AUDIODRIVER=dummy HF_HUB_DISABLE_XET=1 \
		$(BIN)/python -m pytest -q -s tests/test_reliability_recorder.py tests/test_reliability_uploader.py \
		tests/test_reliability_power.py tests/test_reliability_cluster.py tests/test_ray_cluster.py tests/test_compact_crash.py tests/test_real_window_help.py $(ARGS); status=$$?; $(BIN)/python -m bench.report; exit $$status

# The performance and reliability tables in docs/, from bench/results.json and tests/stress_results.json.
.PHONY: docs
docs: $(STAMP)
	$(BIN)/python -m bench.report

lint: $(STAMP)
	$(BIN)/ruff check recorder uploader shared replay export data tests bench tools
	$(BIN)/mypy recorder uploader shared replay export data
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) build *.egg-info
