# The README's commands. `make demo` serves the greeter and talks to it;
# `make test` runs every test. Both install what they need first.

.PHONY: demo chat test bench autobahn autobahn-full fuzz guests wasm-target test-services install check-new

# Guests are built for wasm32-wasip2, which cargo does not install by itself.
wasm-target:
	@rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2

guests: wasm-target
	cd guest-examples && cargo build --release

demo: guests
	cargo build -p wsplug
	./scripts/demo.sh

# The chat example: its page at http://127.0.0.1:8080/, its admin API (for
# publishing with curl) at 127.0.0.1:8081.
chat: guests
	cargo build -p wsplug
	target/debug/wsplug serve --config guest-examples/chat/wsplug.toml

# Real services some tests need, from Debian (installed here if missing):
# Chromium for the browser test, redis-server for topics across hosts (the
# tests start their own servers; none is left running).
test-services:
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	if [ -n "$$missing" ]; then apt-get update -qq && apt-get install -y -qq $$missing >/dev/null; fi

# The Python and JavaScript greeters are built first: tests/tests/languages.rs
# runs them.
test: wasm-target test-services greeter-python greeter-js
	cargo test --workspace

# A release `wsplug` in ~/.cargo/bin (or in $(PREFIX)/bin with PREFIX=...).
install:
	cargo install --locked --path host $(if $(PREFIX),--root $(PREFIX))

# `wsplug new` end to end: generated crates build and pass their tests.
check-new: wasm-target
	cargo build -p wsplug
	./scripts/check-new-handler.sh

# Benchmarks: release builds, then the closed-loop client against wsplug and
# the native baseline, and the Node and Bun peers if npm can install them
# (see the README's Benchmarks section).
bench: guests greeter-python
	@if command -v npm >/dev/null; then cd bench/peers && npm install --silent --no-audit --no-fund; fi
	cargo build --release -p wsplug -p wsplug-bench
	target/release/wsplug-bench

# Conformance: the Autobahn|Testsuite fuzzing client against wsplug serving
# the echo example; fails unless every case passed (see the README).
autobahn: guests
	cargo build -p wsplug
	./scripts/autobahn.sh

# All 517 cases, the 216 of permessage-deflate included (about 8 minutes
# more: the Python 2 client compresses slowly).
autobahn-full: guests
	cargo build -p wsplug
	./scripts/autobahn.sh autobahn/fuzzingclient-full.json

# Fuzzing the frame reader for a minute (nightly and cargo-fuzz, installed
# if missing). FUZZ_SECONDS changes the time.
fuzz:
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	cd fuzz && cargo +nightly fuzz run frame_reader -- -max_total_time=$${FUZZ_SECONDS:-60} -max_len=4096

# Handlers in Python (sdk-python/, see its README): componentize-py, pinned,
# in a virtualenv under target/, then the Python greeter as
# target/python/greeter.wasm. Rebuilt only when its sources change.
PYTHON ?= python3
COMPONENTIZE_PY_VERSION = 0.25.1
PY_VENV = target/python-venv
PY_TOOLS = $(PY_VENV)/.componentize-py-$(COMPONENTIZE_PY_VERSION)
PY_SDK = $(wildcard sdk-python/wsplug/*.py) sdk-python/wit/python.wit wit/websocket.wit

.PHONY: greeter-python

greeter-python: target/python/greeter.wasm

$(PY_TOOLS):
	$(PYTHON) -m venv $(PY_VENV)
	$(PY_VENV)/bin/pip install --quiet --disable-pip-version-check componentize-py==$(COMPONENTIZE_PY_VERSION)
	touch $@

# Written beside the target and renamed into place, so that `serve --watch`
# never sees half a file.
target/python/greeter.wasm: guest-examples/greeter-python/app.py $(PY_SDK) $(PY_TOOLS)
	@mkdir -p $(@D)
	$(PY_VENV)/bin/componentize-py -d wit -d sdk-python/wit -w wsplug:python/flow \
		componentize app -p guest-examples/greeter-python -p sdk-python -o $@.tmp
	mv $@.tmp $@

# The greeter in JavaScript (guest-examples/greeter-js/): componentize-qjs,
# pinned, from npm into target/js-tools, then target/js/greeter.wasm.
# (componentize-js / StarlingMonkey cannot export async functions or streams.)
COMPONENTIZE_QJS_VERSION = 0.4.5
JS_TOOLS = target/js-tools
JS_TOOL = $(JS_TOOLS)/.componentize-qjs-$(COMPONENTIZE_QJS_VERSION)

.PHONY: greeter-js

greeter-js: target/js/greeter.wasm

$(JS_TOOL):
	npm install --prefix $(JS_TOOLS) --silent --no-audit --no-fund componentize-qjs@$(COMPONENTIZE_QJS_VERSION)
	touch $@

target/js/greeter.wasm: guest-examples/greeter-js/greeter.js wit/websocket.wit $(JS_TOOL)
	@mkdir -p $(@D)
	$(JS_TOOLS)/node_modules/.bin/componentize-qjs --wit wit --world flow-handler \
		--js guest-examples/greeter-js/greeter.js -o $@.tmp
	mv $@.tmp $@
