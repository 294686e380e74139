#!/usr/bin/env bash
# The greeter demo (run by `make demo`, which builds what it needs): serves
# the greeter and the ticker, greets two names through `wsplug talk`, then
# keeps serving until Ctrl-C. Without a terminal (CI) it stops after the
# conversation. WSPLUG_LISTEN changes the address (default 127.0.0.1:8080).
set -euo pipefail
cd "$(dirname "$0")/.."

listen=${WSPLUG_LISTEN:-127.0.0.1:8080}
wsplug=target/debug/wsplug
components=guest-examples/target/wasm32-wasip2/release

. scripts/serve-in-background.sh
serve_in_background \
  --route "/greeter=$components/greeter.wasm" \
  --route "/ticker=$components/ticker.wasm"

printf 'Peter\nJohn\n' | "$wsplug" talk "ws://$listen/greeter"

if [ -t 0 ]; then
  echo
  echo "Still serving. In another terminal, try:"
  echo "  $wsplug talk ws://$listen/greeter"
  echo "  $wsplug talk 'ws://$listen/ticker?interval_ms=500'"
  echo "Ctrl-C stops the server."
  wait "$server"
fi
