# The two quick-start commands: `make demo` and `make test`.
SHELL := /bin/bash
VENV := .venv/bin
EP := $(VENV)/event-processor
PYTEST := $(VENV)/pytest

.PHONY: bootstrap up down status demo test stress test-unit lint typecheck

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

## The load scenarios under their SLO gates (HTML report in reports/report-stress.html).
stress: bootstrap
	$(EP) stack up
	$(PYTEST) -m stress -v --html=reports/report-stress.html --self-contained-html

test-unit: bootstrap
	$(PYTEST) -m unit -n auto -q

lint: bootstrap
	$(VENV)/ruff check src tests && $(VENV)/ruff format --check src tests

typecheck: bootstrap
	$(VENV)/mypy
