# The two front-door commands (see README):
#   make demo   - install everything into .venv and start the demo call on the CPU
#   make test   - install everything into .venv and run the test suite
.PHONY: demo test bootstrap browser

bootstrap:
	scripts/bootstrap.sh

browser:
	scripts/install_browser.sh

demo: bootstrap
	.venv/bin/talkcodec demo

test: bootstrap browser
	.venv/bin/python -m pytest -q -ra $(PYTEST_ARGS)
