#!/usr/bin/env bash
# Runs the Autobahn|Testsuite fuzzing client against wsplug serving the echo
# example (run by `make autobahn` and `make autobahn-full`, which build what
# it needs) and fails unless every case passed. The report is in
# target/autobahn/report/. The argument is the spec: autobahn/fuzzingclient.json
# (every case but a representative 60 of the 216 compression cases, 12.* and
# 13.*: CI's) by default, autobahn/fuzzingclient-full.json for all of them.
#
# wstest needs Python 2.7: the virtualenv is made with pyenv's 2.7.18 on the
# first run and kept in target/autobahn/venv.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/autobahn/venv
listen=127.0.0.1:19001
wsplug=target/debug/wsplug

if [ ! -x "$venv/bin/wstest" ]; then
  export PYENV_VERSION=2.7.18
  pyenv exec python -m pip install --quiet virtualenv
  pyenv exec python -m virtualenv --quiet "$venv"
  "$venv/bin/pip" install --quiet autobahntestsuite==25.10.1
fi

. scripts/serve-in-background.sh
serve_in_background --config autobahn/wsplug.toml

rm -rf target/autobahn/report
"$venv/bin/wstest" -m fuzzingclient -s "${1:-autobahn/fuzzingclient.json}" > target/autobahn/wstest.log
python3 autobahn/check.py target/autobahn/report/index.json
