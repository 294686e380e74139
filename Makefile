# The README's commands. `make demo` serves the greeter and talks to it;
# `make test` runs every test. Both install what they need first.

.PHONY: demo test guests wasm-target

# Guests are built for wasm32-wasip2, which cargo does not install by itself.
wasm-target:
	@rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2

guests: wasm-target
	cd guest-examples && cargo build --release

demo: guests
	cargo build -p wsplug
	./scripts/demo.sh

test: wasm-target
	cargo test --workspace
