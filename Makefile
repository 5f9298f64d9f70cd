# make demo: render the default sampler into a scratch copy of Rezolus, compile and load it.
# make test: the whole suite. Both set everything up on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
REZOLUS_DIR ?= $(abspath ../shared/rezolus)
export REZOLUS_DIR

.PHONY: demo test bench system-deps clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

system-deps:
	@scripts/system-deps.sh

demo: $(VENV)/.installed system-deps
	$(PY) -m rezolus_sampler.demo

test: $(VENV)/.installed system-deps
	$(PY) -m pytest -q

bench: $(VENV)/.installed system-deps
	$(PY) bench/generation.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
