# The two front-door commands (see README):
#   make demo   - install everything into .venv and start the demo call on the CPU
#   make test   - install everything into .venv, lint (ruff, mypy) and run the test suite
.PHONY: demo test lint bootstrap browser redis

bootstrap:
	scripts/bootstrap.sh

browser:
	scripts/install_browser.sh

redis:
	scripts/install_redis.sh

demo: bootstrap
	.venv/bin/talkcodec demo

test: bootstrap browser redis lint
	.venv/bin/python -m pytest -q -ra $(PYTEST_ARGS)

# The rule sets are in pyproject.toml ([tool.ruff], [tool.mypy]).
lint: bootstrap
	.venv/bin/ruff check .
	.venv/bin/mypy
