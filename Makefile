# Two commands set everything up on a fresh machine:
#   make test   creates .venv, installs torch==2.13.0 (CPU), then the project with its test
#               extras and JAX, runs ruff and pytest.
#   make demo   runs the main job on its bundled real data.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: test demo lint format verify bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and pinned: an open range would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test,experiments,jax,fast]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -n 2

demo: $(STAMP)
	$(BIN)/cprop reproduce --quick

verify: $(STAMP)
	$(BIN)/cprop verify

bench: $(STAMP)
	$(BIN)/cprop bench

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) results
