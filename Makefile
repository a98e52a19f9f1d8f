# The two quick-start commands: `make demo` and `make test`.
SHELL := /bin/bash
VENV := .venv/bin
EP := $(VENV)/event-processor
PYTEST := $(VENV)/pytest

.PHONY: bootstrap up down status demo test test-unit test-stack lint typecheck

bootstrap:
	@scripts/bootstrap.sh

up: bootstrap
	$(EP) stack up

down: bootstrap
	$(EP) stack down

status: bootstrap
	$(EP) stack status

## The demo: bring the stack up, run the scenarios with the live dashboard, report.
demo: bootstrap
	scripts/demo/full_demo.sh

## Every test: unit tests in parallel, then everything that needs the stack, serially.
test: bootstrap
	scripts/run_tests.sh

test-unit: bootstrap
	$(PYTEST) -m unit -n auto -q

lint: bootstrap
	$(VENV)/ruff check src tests && $(VENV)/ruff format --check src tests

typecheck: bootstrap
	$(VENV)/mypy
