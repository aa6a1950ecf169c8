# Every target that needs Python creates .venv itself, so a fresh clone needs only python3 and make.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install eval test lint bench clean gate baseline

# The install takes minutes on a fresh clone: say what each step is, and let pip show its
# progress on the long one rather than a silent screen.
$(STAMP): pyproject.toml
	@echo "== [1/3] creating $(VENV)"
	$(PYTHON) -m venv $(VENV)
	@echo "== [2/3] upgrading pip"
	$(PY) -m pip install -q --upgrade pip
	@echo "== [3/3] installing evalkit-ladder and its dependencies (a few minutes the first time)"
	$(PY) -m pip install --progress-bar on -e '.[test]'
	touch $(STAMP)
	@echo "== installed: $(VENV)/bin/evalkit"

install: $(STAMP)

## Run the whole ladder offline (embedded local provider) on every bundled test set.
TESTSETS := $(patsubst %/task.yaml,%,$(wildcard testsets/*/task.yaml))

eval: $(STAMP)
	$(VENV)/bin/evalkit run $(TESTSETS)   # each run ends with its report: reports/<run>/index.html

## Gate the bundled ladders against the committed baselines (exit 1 regression, 2 usage error).
## Local-provider latency is CPU time on whatever machine runs it, hence the wide latency slack.
BASELINE := baselines/bundled.json
LATEST := $(addprefix reports/latest-,$(notdir $(TESTSETS)))

gate: eval
	$(VENV)/bin/evalkit gate $(LATEST) --baseline $(BASELINE) \
		--max-latency-increase 2 --latency-slack-s 0.5 --junit reports/gate-junit.xml

## Re-record the bundled baselines on purpose (commit the diff with the reason).
baseline: eval
	$(VENV)/bin/evalkit baseline update $(LATEST) --to $(BASELINE)

test: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check evalkit tests

## Benchmarks (not part of `make test`): each prints its figure and the ratio to its target.
## Method, machine and the last results: docs/benchmarks.md. Takes ~5 minutes on 2 cores.
bench: $(STAMP)
	@nproc; free -h | head -2; $(PY) --version
	$(PY) benchmarks/bench_wire.py
	$(PY) benchmarks/bench_overhead.py
	$(PY) benchmarks/bench_local_ladder.py
	$(PY) benchmarks/bench_report.py
	$(PY) benchmarks/bench_memory.py
	$(PY) benchmarks/bench_sent.py
	$(PY) benchmarks/bench_startup.py

clean:
	rm -rf $(VENV) reports/*/ .evalkit-cache
