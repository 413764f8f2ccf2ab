# The two README commands are `make demo` and `make test`; both install what they need first.
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
export NOTALONE_HOME ?= $(CURDIR)/.notalone
export PREFECT_HOME ?= $(NOTALONE_HOME)/prefect
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 120
# Bytecode compiled ahead: the dependencies' at `uv sync` (UV_COMPILE_BYTECODE), our packages'
# before commands run. With PYTHONDONTWRITEBYTECODE set, as on our machines, every command would
# otherwise compile its imports from source (--help: 1.6 s -> 0.6 s). Not a [tool.uv] setting:
# that makes every `uv run` reinstall the project and re-check 14k files (+1 s).
PACKAGES := configs features models interventions pipelines webapp
COMPILE = $(RUN) python -m compileall -q $(PACKAGES) >/dev/null
RUN := $(UV) run --frozen

.PHONY: install demo test test-fast lint format bench-features bench-commands bench-train bench-score bench-webapp bench-moodle bench-scale bench serve ui clean

install: .venv/.installed

.venv/.installed: pyproject.toml uv.lock
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	UV_COMPILE_BYTECODE=1 $(UV) sync --frozen
	$(COMPILE)
	@mkdir -p "$(PREFECT_HOME)"
	$(RUN) prefect server database upgrade -y >/dev/null
	@touch $@

demo: install
	@$(COMPILE)
	$(RUN) notalone demo

test: install
	@$(COMPILE)
	$(RUN) pytest -q

test-fast: install  # everything but the tests marked slow (crash, fuzz, notebook, OULAD point-in-time)
	$(RUN) pytest -q -m "not slow"

lint: install
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) lint-imports

format: install
	$(RUN) ruff check --fix .
	$(RUN) ruff format .

bench-features: install
	$(RUN) python benchmarks/bench_features.py

bench-commands: install
	$(RUN) python benchmarks/bench_commands.py

bench-train: install
	$(RUN) python benchmarks/bench_train.py

bench-score: install
	$(RUN) python benchmarks/bench_score.py

bench-webapp: install
	$(RUN) python benchmarks/bench_webapp.py

bench-moodle: install
	$(RUN) python benchmarks/bench_moodle.py

bench-scale: install
	$(RUN) python benchmarks/bench_scale.py --docs docs/scale.md

bench: bench-features bench-commands bench-train bench-score

serve: install
	$(RUN) notalone serve --start-server

UI ?= mlflow
ui: install
	$(RUN) notalone ui $(UI)

clean:
	rm -rf .notalone .venv
