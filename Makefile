# Everything from a fresh machine: `make demo` (end-to-end on small generated data), `make test`.
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install demo test lint clean

install: $(VENV)/.installed

# torch first: the CPU wheel pinned here; anything unpinned pulled before it fetches a CUDA build.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

demo: install
	$(BIN)/bench data generate tasks=mt5 scale=smoke
	$(BIN)/bench run method=mtdt tasks=mt5 scale=smoke

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

# pytest exits 5 when it collects nothing, which fails this target (and CI) as it should.
test: lint
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) runs/smoke data/replay-ep6 data/scripted-ep6
