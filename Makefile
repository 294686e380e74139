# The README's commands. `make demo` serves the greeter and talks to it;
# `make test` runs every test. Both install what they need first.

.PHONY: demo chat test bench autobahn fuzz guests wasm-target test-services install check-new

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

test: wasm-target test-services
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
bench: guests
	@if command -v npm >/dev/null; then cd bench/peers && npm install --silent --no-audit --no-fund; fi
	cargo build --release -p wsplug -p wsplug-bench
	target/release/wsplug-bench

# Conformance: the Autobahn|Testsuite fuzzing client against wsplug serving
# the echo example; fails unless every case passed (see the README).
autobahn: guests
	cargo build -p wsplug
	./scripts/autobahn.sh

# Fuzzing the frame reader for a minute (nightly and cargo-fuzz, installed
# if missing). FUZZ_SECONDS changes the time.
fuzz:
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	cd fuzz && cargo +nightly fuzz run frame_reader -- -max_total_time=$${FUZZ_SECONDS:-60} -max_len=4096
