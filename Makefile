# roadseg: two set-up commands (make synth, make test) plus deploy/diff/destroy wrappers.
# Every target installs what it needs; nothing here calls AWS except deploy/diff/destroy.
SHELL := /bin/bash
ENV ?= dev
# SCALING=off leaves the endpoints' scalable targets out: step 1 of an instance-type change (docs/deploy.md).
SCALING ?= on
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
CDK := npx --no-install cdk
# The export environment (export/model.py): Python 3.11 with MXNet 1.9.1, from a wheelhouse downloaded once for the
# ExportModel job's Linux image; the local .venv-export installs the very same files (--no-index --no-deps).
EXPORT_PYTHON ?= python3.11
EXPORT_VENV := .venv-export
EXPORT_WHEELS := .wheelhouse/export
# The drive jobs' libraries (drivelogs/requirements.txt) for the processing image's Python 3.12.
DRIVE_WHEELS := .wheelhouse/drives
EXPORT_PLATFORMS := $(foreach p,manylinux_2_28_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64,--platform $(p))

# The CDK CLI and jsii (which every `import aws_cdk` starts) run on the Node.js pinned in package.json
# (node_modules/.bin/node), not on the machine's: jsii no longer supports Node 20.
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)
# Offline: no CLI telemetry, no version check, no notices, no instance-metadata lookups, no SDK telemetry.
export CDK_DISABLE_CLI_TELEMETRY := true
export CDK_DISABLE_VERSION_CHECK := 1
export AWS_EC2_METADATA_DISABLED := true
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: synth test lint deploy diff destroy bench demo clean

$(VENV)/.app-installed: requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --disable-pip-version-check -r requirements.txt
	$(PIP) install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

$(VENV)/.dev-installed: requirements-dev.txt $(VENV)/.app-installed
	$(PIP) install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

$(EXPORT_WHEELS).downloaded: export/requirements.txt
	rm -rf $(EXPORT_WHEELS) && mkdir -p $(EXPORT_WHEELS)
	$(EXPORT_PYTHON) -m pip download -q --disable-pip-version-check --only-binary=:all: --no-deps \
		$(EXPORT_PLATFORMS) --python-version 3.11 --implementation cp -r $< -d $(EXPORT_WHEELS)
	touch $@

$(DRIVE_WHEELS).downloaded: drivelogs/requirements.txt
	rm -rf $(DRIVE_WHEELS) && mkdir -p $(DRIVE_WHEELS)
	$(EXPORT_PYTHON) -m pip download -q --disable-pip-version-check --only-binary=:all: --no-deps \
		$(EXPORT_PLATFORMS) --python-version 3.12 --implementation cp -r $< -d $(DRIVE_WHEELS)
	touch $@

$(EXPORT_VENV)/.installed: $(EXPORT_WHEELS).downloaded
	rm -rf $(EXPORT_VENV) && $(EXPORT_PYTHON) -m venv $(EXPORT_VENV)
	$(EXPORT_VENV)/bin/pip install -q --disable-pip-version-check --no-index --no-deps $(EXPORT_WHEELS)/*.whl
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

synth: $(VENV)/.app-installed node_modules/.installed $(EXPORT_WHEELS).downloaded $(DRIVE_WHEELS).downloaded
	$(CDK) synth --quiet --no-notices -c env=$(ENV) -c scaling=$(SCALING)
	$(PY) -m stacks.checks.summary cdk.out
	$(PY) -m stacks.checks.service_contracts cdk.out --env $(ENV)

test: $(VENV)/.dev-installed node_modules/.installed $(EXPORT_VENV)/.installed $(DRIVE_WHEELS).downloaded
	$(VENV)/bin/ruff check .
	PYTHONPATH=lambda $(VENV)/bin/lint-imports
	$(PY) -m pytest -q

lint: $(VENV)/.dev-installed
	$(VENV)/bin/ruff check .

diff: $(VENV)/.app-installed node_modules/.installed
	$(CDK) diff --no-notices -c env=$(ENV) -c scaling=$(SCALING)

# Synthesize, check the account read-only (SKIP_PREFLIGHT=1 skips it), then deploy exactly what was checked.
deploy: synth
ifeq ($(SKIP_PREFLIGHT),1)
	@echo "preflight skipped (SKIP_PREFLIGHT=1)"
else
	$(VENV)/bin/roadseg --env $(ENV) env preflight --scaling $(SCALING) --assembly cdk.out
endif
	$(CDK) deploy --all --app cdk.out --no-notices --require-approval broadening

# Delete the environment's stacks (README "Teardown": what is retained, what keeps billing). Synthesizes first, like
# deploy, so the pinned CDK CLI destroys exactly this environment's assembly; it asks before deleting (FORCE=1: no).
destroy: synth
	$(CDK) destroy --all --app cdk.out --no-notices$(if $(filter 1,$(FORCE)), --force)

bench: $(VENV)/.dev-installed node_modules/.installed $(EXPORT_VENV)/.installed
	$(PY) bench/preprocess.py
	$(PY) bench/capacity.py
	$(PY) bench/extraction.py
	PYTHONPATH=lambda $(PY) bench/ingest_overlap.py
	PYTHONPATH=.:lambda $(PY) bench/ingest_memory.py
	PYTHONPATH=.:lambda $(EXPORT_VENV)/bin/python bench/exported_model.py --width 512 --height 256 --frames 4 --warmup 1
	$(PY) bench/extraction_formats.py
	$(PY) bench/sidecar.py
# Issues 22-23, each at its defaults (on the 2-core build machine: 2, 9, 15, 28 and 61 s). bench/log_kinds_table.py is
# not a benchmark: it writes docs/drives.md's table, which tests/drivelogs/test_log_kinds.py keeps current.
	$(PY) bench/signals.py
	PYTHONPATH=.:lambda $(PY) bench/postprocess_signals.py
	PYTHONPATH=. $(PY) bench/scoring.py
	PYTHONPATH=. $(PY) bench/selection.py
	$(PY) bench/drift.py

# Local rehearsal against moto on 127.0.0.1 (no AWS account): see docs/rehearsal.md.
demo: $(VENV)/.dev-installed node_modules/.installed
	$(PY) -m demo

clean:
	rm -rf cdk.out .pytest_cache .ruff_cache
