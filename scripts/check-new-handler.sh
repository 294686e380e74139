#!/usr/bin/env bash
# `wsplug new` as a user runs it (run by `make check-new` and CI): generates
# a flow and a sink-source handler crate outside the repository, runs each
# one's test, builds its component with `cargo handler` and checks it with
# `wsplug check`. WSPLUG names the binary (default target/debug/wsplug).
set -euo pipefail
cd "$(dirname "$0")/.."

root=$PWD
wsplug=${WSPLUG:-$root/target/debug/wsplug}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Made inside another workspace, as in a checkout: the crates stay out of it.
printf '[workspace]\n' > "$work/Cargo.toml"

for kind in flow sink-source; do
  crate="$work/hello-$kind"
  if [ "$kind" = sink-source ]; then "$wsplug" new "$crate" --sink-source; else "$wsplug" new "$crate"; fi
  # The checkout's lock file and target directory: the same dependencies,
  # already built by `make test`, are not built again.
  cp Cargo.lock "$crate/"
  (cd "$crate" && CARGO_TARGET_DIR="$root/target" cargo test && cargo handler)
  "$wsplug" check "$crate/target/wasm32-wasip2/release/hello_${kind//-/_}.wasm"
done
