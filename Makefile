# ctrbid: the two quick-start commands are `make run` and `make test`.
# Every target installs what it needs and is safe to run again.

PYTHON       ?= python3
VENV         := .venv
VPY          := $(VENV)/bin/python
ORT_VERSION  := 1.31.1
ORT_LIB      := .ort/libonnxruntime.so
BIN          := target/release/ctrbid
CARGO        ?= cargo
# apt-get as root, through sudo otherwise.
SUDO         := $(if $(filter 0,$(shell id -u)),,sudo)
# pip keeps no cache (PyTorch's CUDA wheels are 3.7 GB, installed 7 GB: a cached copy
# would double what stays on disk) and unpacks in .venv/ rather than /tmp, which may
# be a small tmpfs. The first `make test` needs about 12 GB free.
PIP_TMP      := $(VENV)/.pip-tmp
PIP_INSTALL  := mkdir -p $(PIP_TMP) && TMPDIR=$(CURDIR)/$(PIP_TMP) $(VPY) -m pip install --no-cache-dir --quiet --disable-pip-version-check

# Simulator log the default model is trained on (`make models`).
SIM_SEED        ?= 7
SIM_IMPRESSIONS ?= 5000000
DATA            := data

.PHONY: run test build setup-deploy-tools canary drift-reference fuzz fuzz-short setup-cargo-fuzz setup-ort setup-py setup-tools models models-large loop loadtest economics fleet loadtest-cache loadtest-ab repeat-tests instructions instructions-budget clean-data

## The bidder, serving the default model and catalog on 127.0.0.1:8080, its event log in data/events.
run: setup-ort build
	$(BIN) serve --config deploy/ctrbid.toml --events-dir $(DATA)/events

## Every test: Rust unit + end-to-end (CPU build, and the CUDA build's start-up checks),
## then Python (trainer and pipeline).
test: setup-ort setup-py setup-tools setup-deploy-tools build
	# Every Rust test, and every bench once as a test (criterion's test mode; the
	# figures come from `cargo bench`), in the `ci` profile: release without LTO.
	$(CARGO) test --profile ci --tests --benches
	# The bid path's instructions under callgrind against benches/instructions.budget,
	# in the `bench` profile the budget was counted in.
	$(CARGO) bench --bench instructions -- --test
	# The CUDA build: it compiles, and without a CUDA runtime it refuses to start.
	$(CARGO) test --profile ci --features cuda --test startup_errors
	PYTHONPATH=models CTRBID_BIN=$(BIN) $(VPY) -m pytest -q models/tests
	# The load-test scripts' arithmetic (no server).
	$(VPY) -m pytest -q loadtest/tests
	$(VPY) -m pytest -q deploy/tests

build:
	$(CARGO) build --release

## Tools the tests run, from Debian's packages: valgrind (the instruction-count guard)
## and redis-server (tests/fleet_e2e.rs starts its own on a free port and stops it).
setup-tools:
	command -v valgrind >/dev/null && { command -v redis-server >/dev/null || test -x /usr/bin/redis-server; } || { \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq valgrind redis-server; }

## Tools deploy/tests checks deploy/ with (deploy/README.md): hadolint, kubernetes-validate
## and promql-parser into .venv (deploy/requirements.txt); promtool, unpacked from Debian's
## prometheus package into .venv/bin rather than installed (the package would also start a
## Prometheus server on port 9090, the bidder's admin port); where npm exists, the Argo
## Rollouts models and TypeScript into .venv/deploy-node (deploy/tests/argo/package.json).
setup-deploy-tools: $(VENV)/.deploy-requirements-installed $(VENV)/deploy-node/.installed
	# promtool, and the Prometheus server for deploy/tests/test_analysis_live.py, from
	# Debian's package: unpacked into .venv/bin, not installed (no service on port 9090).
	{ command -v promtool >/dev/null || test -x $(VENV)/bin/promtool; } && test -x $(VENV)/bin/prometheus || { \
	  $(SUDO) apt-get update -qq && d=$$(mktemp -d) && (cd $$d && apt-get download -qq -o APT::Sandbox::User=root prometheus) && \
	  dpkg-deb -x $$d/prometheus_*.deb $$d/x && cp $$d/x/usr/bin/promtool $$d/x/usr/bin/prometheus $(VENV)/bin/ && rm -rf $$d; }

$(VENV)/.deploy-requirements-installed: deploy/requirements.txt
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) -r deploy/requirements.txt
	rm -rf $(PIP_TMP)
	touch $@

$(VENV)/deploy-node/.installed: deploy/tests/argo/package.json deploy/tests/argo/package-lock.json
	if command -v npm >/dev/null; then \
	  mkdir -p $(VENV)/deploy-node && cp deploy/tests/argo/package.json deploy/tests/argo/package-lock.json $(VENV)/deploy-node/ && \
	  npm ci --prefix $(VENV)/deploy-node --no-audit --no-fund --loglevel=error && touch $@; \
	else echo "npm not found: deploy/tests skips its Argo Rollouts schema checks"; fi

## Instructions per request by stage, with callgrind's cache simulation (about 5 min);
## checks the bid path against benches/instructions.budget (benches/README.md).
instructions: setup-ort setup-tools
	$(CARGO) bench --bench instructions

## Writes the bid path's measured count as its new budget: after a change that is meant
## to cost more (or less). Commit benches/instructions.budget with the change.
instructions-budget: setup-ort setup-tools
	CTRBID_UPDATE_BUDGET=1 $(CARGO) bench --bench instructions -- --test

## Every fuzz target for FUZZ_SECONDS each (default 600), one after another on one core,
## each seeded with every request the project has; summary per target, logs in
## fuzz/logs/, crash inputs in fuzz/artifacts/ (fuzz/README.md). Stable Rust, no sanitizer.
FUZZ_SECONDS ?= 600
fuzz: setup-cargo-fuzz
	fuzz/run_all.sh $(FUZZ_SECONDS)

## The short run (30 s per target, about 12 min with the build): a fuzz job of its own
## (.ci/fuzz), kept out of `make test` for its time budget (fuzz/README.md).
fuzz-short: setup-cargo-fuzz
	fuzz/run_all.sh 30

setup-cargo-fuzz:
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked

## The load test in one sitting (about 12 min): ceiling, ONNX Runtime alone, the full
## bidder and its batcher knobs; report in target/loadtest/report/.
loadtest: setup-ort setup-py build
	$(VPY) loadtest/report.py sim-mix

## Campaign economics judged by `ctrbid exchange`'s ledger (about 50 min, 5 GB of ledgers and event logs):
## budget pacing, frequency caps, first-price shading and what they cost all on against
## all off, 15 simulated days of 200,000 requests and ten of 100,000 at 1,500/s; report in target/economics/
## (loadtest/economics.py, loadtest/README.md#campaign-economics).
economics: setup-ort setup-py build
	$(VPY) loadtest/economics.py --out target/economics --requests-per-day 200000 --rate 1500

## A fleet of three instances on one real redis-server (about 20 min): budgets spent once
## across them, replayed bills refused, Redis killed for 30 s mid-day, Redis against
## in-process on the bid path. Judged from the exchange's ledger: target/fleet/report.md.
fleet: setup-ort setup-py setup-tools build
	$(VPY) loadtest/fleet.py --out target/fleet

## The canary judge on simulated days (about 8 min): the default model against its copy
## predicting 1.3 x its pCTR, then against itself, each on 3 % of the users, then a noisy
## copy of it against the default model on 20 %; report in target/canary/
## (loadtest/canary.py, loadtest/README.md#the-canary-judge).
canary: setup-ort setup-py build
	$(VPY) loadtest/canary.py --out target/canary

## The score cache under load (about 5 min): the bidder with and without it, on streams
## with and without repeated impressions; report in target/loadtest/cache/.
loadtest-cache: setup-ort setup-py build
	$(VPY) loadtest/cache.py repeat

## Two settings against each other, interleaved (about 5 min): here the batcher's fixed
## wait (A) and its adaptive wait (B); report in target/loadtest/ab/. Any flags: see
## loadtest/ab.py.
loadtest-ab: setup-ort setup-py build
	$(VPY) loadtest/ab.py batch-wait --a "--adaptive-wait false" --b "--adaptive-wait true" --rates 2500,5000 --rounds 3

## The end-to-end test binaries N times in a row (default 20, about 15 min) while
## `ctrbid loadgen` keeps another bidder busy beside them: tests that race the clock or
## the box fail here. Logs in target/repeat-tests/.
repeat-tests: setup-ort build
	loadtest/repeat_tests.sh

## ONNX Runtime's shared library, from the pinned PyPI wheel, at .ort/libonnxruntime.so
## (.cargo/config.toml points ORT_DYLIB_PATH there).
setup-ort: $(ORT_LIB)

$(ORT_LIB): Makefile
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) onnxruntime==$(ORT_VERSION)
	rm -rf $(PIP_TMP)
	mkdir -p .ort
	cp -f "$$($(VPY) -c 'import onnxruntime, pathlib; print(pathlib.Path(onnxruntime.__file__).parent / "capi" / "libonnxruntime.so.$(ORT_VERSION)")')" $(ORT_LIB).tmp
	mv -f $(ORT_LIB).tmp $(ORT_LIB)

## Python packages for training (PyTorch, ONNX): installed once into .venv.
setup-py: $(VENV)/.requirements-installed

$(VENV)/.requirements-installed: models/requirements.txt
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	@df -Pk . | awk 'NR==2 && $$4 < 12*1024*1024 { printf "warning: %.1f GB free here; installing PyTorch with its CUDA wheels needs about 12 GB\n", $$4/1024/1024 }'
	$(PIP_INSTALL) -r models/requirements.txt
	rm -rf $(PIP_TMP)
	touch $@

## Rebuilds models/default/ from scratch (about 40 min here, AutoInt+ 22 of them): simulate, features, the zoo (LR, FM,
## DeepFM, Wide & Deep, DCN-v2, AutoInt+, FinalMLP, two trainings at a time; the best on validation data
## among those within the cost budget per row is exported with the report), parity.
models: setup-ort setup-py build
	$(BIN) simulate --seed $(SIM_SEED) --impressions $(SIM_IMPRESSIONS) --out $(DATA)/sim
	$(BIN) features --sim $(DATA)/sim --spec models/feature_spec.json --out $(DATA)/features
	PYTHONPATH=models $(VPY) -m ctrbid_train zoo --features $(DATA)/features --out $(DATA)/zoo --export models/default --jobs 2
	cp $(DATA)/sim/catalog.json models/default/catalog.json
	PYTHONPATH=models CTRBID_BIN=$(BIN) $(VPY) -m ctrbid_train parity --model models/default/model.onnx --features $(DATA)/features --ctrbid $(BIN)

## The default model's drift reference (about 15 s): 400,000 impressions of its world
## and seed, their feature rows, and the distribution of the rows and of the model's
## pCTR on them in models/default/model.drift.json (models/README.md#drift-reference).
drift-reference: setup-ort setup-py build
	$(BIN) simulate --seed $(SIM_SEED) --impressions 400000 --out $(DATA)/drift/sim
	$(BIN) features --sim $(DATA)/drift/sim --spec models/feature_spec.json --out $(DATA)/drift/features
	PYTHONPATH=models $(VPY) -m ctrbid_train drift-reference --model models/default/model.onnx \
		--features $(DATA)/drift/features --rows 400000

## The model zoo on a 60M-impression log (about 65 min here): the oracle-gap figures of
## models/README.md. The same simulator world and seed as `make models`, one epoch per model
## (every model's best epoch on the 5M, 10M and 30M logs), two trainings at a time;
## nothing is exported. The logs are written gzipped (11 GB rather than 50 GB) and
## deleted once the arrays (14 GB) are written.
LARGE_IMPRESSIONS ?= 60000000
models-large: setup-ort setup-py build
	$(BIN) simulate --seed $(SIM_SEED) --impressions $(LARGE_IMPRESSIONS) --out $(DATA)/large/sim --compress gzip
	$(BIN) features --sim $(DATA)/large/sim --spec models/feature_spec.json --out $(DATA)/large/features
	rm -f $(DATA)/large/sim/requests.jsonl.gz $(DATA)/large/sim/impressions.jsonl.gz
	PYTHONPATH=models $(VPY) -m ctrbid_train zoo --features $(DATA)/large/features --out $(DATA)/large/zoo --epochs 1 --reuse --jobs 2

## The loop at a small size (about 4 min here): the default model bids for a simulated
## week against `ctrbid exchange`, its event log becomes training arrays, the zoo is
## retrained on them (and on a uniform log of the same size), every model is judged
## on the truth, and the next day is played by the default and the retrained model;
## data/loop/loop_report.md (models/README.md, The loop).
loop: setup-ort setup-py build
	PYTHONPATH=models $(VPY) -m ctrbid_train loop --out $(DATA)/loop --zoo

clean-data:
	rm -rf $(DATA)
