# Sourced by the scripts that run a server: starts `wsplug serve` with the
# given arguments in the background, stops it when the script exits, and
# returns once it accepts connections on $listen (or fails if it died).
serve_in_background() {
  "$wsplug" serve --listen "$listen" "$@" &
  server=$!
  trap 'kill $server 2>/dev/null || true' EXIT
  until (exec 3<>"/dev/tcp/${listen%:*}/${listen##*:}") 2>/dev/null; do
    kill -0 "$server" 2>/dev/null || { echo "wsplug serve failed to start" >&2; exit 1; }
    sleep 0.1
  done
}
