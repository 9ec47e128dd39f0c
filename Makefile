# Two commands on a fresh machine: `make quickstart` (the main job) and `make test`.
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-stamp
DATA    ?= ../shared/data
DATASET ?= isbi2015

.PHONY: quickstart test docs reproduce ablation benchmarks clean-venv

$(STAMP): pyproject.toml requirements/constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c requirements/constraints.txt -e ".[dev,notebooks]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

quickstart: $(STAMP)
	$(PY) -m farnetlib.reproduce quickstart

# two test processes on two cores (pytest-xdist; each test uses the cores left per process), the slow
# notebook and real-data tests handed out as workers free up; the 15 slowest tests are printed
test: $(STAMP)
	$(PY) -m pytest -q -ra --durations=15 -n auto --dist worksteal

# the docs site: docs/ pages, results/README.md and the committed executed notebooks (not run again),
# the API reference from the docstrings; warnings are errors (broken internal links included)
DOCS_STAMP := $(VENV)/.docs-stamp
$(DOCS_STAMP): $(STAMP)
	$(PY) -m pip install -q -c requirements/constraints.txt -e ".[docs]"
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	rm -rf docs/_build
	$(PY) -m sphinx -W --keep-going -q -b html docs docs/_build/html
	@echo "docs: open docs/_build/html/index.html"

reproduce: $(STAMP)
	$(PY) -m farnetlib.reproduce dataset --dataset $(DATASET) --root $(DATA)/$(DATASET)

# the ISBI backbone/loss ablation (notebook 03): trains the arms not finished yet (hours; resumable), then tables
ablation: $(STAMP)
	$(PY) -m farnetlib.reproduce study --study configs/isbi2015_ablation.json

benchmarks: $(STAMP)
	$(PY) benchmarks/run_all.py --data $(DATA)

clean-venv:
	rm -rf $(VENV)
