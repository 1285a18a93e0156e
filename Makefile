.PHONY: install services test lint format run bench

install:
	bash .ci/install.sh

services:
	bash .ci/services.sh

# The test command (README): real PostgreSQL, Redis, Chromium.
test: install services
	.venv/bin/python -m pytest -q

lint:
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

format:
	.venv/bin/ruff check --fix .
	.venv/bin/ruff format .

# Set up and run the whole app with demo data and accounts.
run:
	bash bin/run-demo

bench:
	.venv/bin/python bench/annotate.py
	.venv/bin/python bench/export.py
	.venv/bin/python bench/train.py
	.venv/bin/python bench/generate.py
	.venv/bin/python bench/swap.py
