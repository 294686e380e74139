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

"$wsplug" serve --listen "$listen" \
  --route "/greeter=$components/greeter.wasm" \
  --route "/ticker=$components/ticker.wasm" &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT

# Wait until the server accepts connections (or has died).
until (exec 3<>"/dev/tcp/${listen%:*}/${listen##*:}") 2>/dev/null; do
  kill -0 "$server" 2>/dev/null || { echo "wsplug serve failed to start" >&2; exit 1; }
  sleep 0.1
done

printf 'Peter\nJohn\n' | "$wsplug" talk "ws://$listen/greeter"

if [ -t 0 ]; then
  echo
  echo "Still serving. In another terminal, try:"
  echo "  $wsplug talk ws://$listen/greeter"
  echo "  $wsplug talk 'ws://$listen/ticker?interval_ms=500'"
  echo "Ctrl-C stops the server."
  wait "$server"
fi
