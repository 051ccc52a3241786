#!/usr/bin/env bash
# Project entry point.  ./run.sh setup | demo | test | bench [name] | prism-path
#   setup  idempotent: .venv with pinned dependencies, the project itself, and
#          Beam's Prism runner built with Go at the SDK's release tag.
#   demo   setup, then the Bronze flow on embedded defaults (NATS started here).
#   test   setup, then the test suite (fixtures start nats-server themselves).
set -euo pipefail
cd "$(dirname "$0")"
ROOT="$(pwd)"
BEAM_VERSION="2.77.0"            # one Beam release for the SDK, Prism and the Flink job server
VENV="$ROOT/.venv"
TOOLS="$ROOT/.tools"
PRISM="$TOOLS/bin/prism"
PY="$VENV/bin/python"

log() { printf '[run.sh] %s\n' "$*" >&2; }

setup_python() {
  local stamp="$VENV/.requirements.sha"
  local want; want="$(cat requirements.txt setup.py | sha256sum | cut -d' ' -f1)"
  if [ ! -x "$PY" ]; then
    log "creating virtualenv $VENV"
    python3 -m venv "$VENV"
  fi
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "installing pinned dependencies"
    "$PY" -m pip install -q --upgrade pip >/dev/null
    "$PY" -m pip install -q -r requirements.txt
    "$PY" -m pip install -q --no-deps -e .
    echo "$want" > "$stamp"
  fi
  local got; got="$("$PY" -c 'import logging; logging.disable(logging.WARNING); import apache_beam; print(apache_beam.__version__)')"
  if [ "$got" != "$BEAM_VERSION" ]; then
    log "apache-beam $got installed but run.sh pins $BEAM_VERSION"; exit 1
  fi
}

# Prism's job service (which also serves the SDK workers' endpoints) listens on every
# interface in Beam's source (net.Listen(":port")).  The build here adds one file and
# changes that one line so it listens on PRISM_LISTEN_HOST, default 127.0.0.1; the
# build fails loudly if the line is not found (a new Beam release must be re-checked).
PRISM_BUILD="$BEAM_VERSION+listen-host.1"
PRISM_LISTEN_GO='package jobservices

import (
	"net"
	"os"
	"strconv"
)

// listenAddress is where the job service listens: PRISM_LISTEN_HOST, default the
// loopback interface (marketlake build of Prism, see run.sh).
func listenAddress(port int) string {
	host := os.Getenv("PRISM_LISTEN_HOST")
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}
'

setup_prism() {
  local stamp="$TOOLS/prism.version"
  if [ -x "$PRISM" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$PRISM_BUILD" ]; then return; fi
  if ! command -v go >/dev/null 2>&1; then
    log "Go is required to build Beam's Prism runner (no binary can be downloaded here)"; exit 1
  fi
  log "building Prism v$BEAM_VERSION with Go, listening on 127.0.0.1 (a few minutes)"
  mkdir -p "$TOOLS/bin"
  local mod="github.com/apache/beam/sdks/v2@v$BEAM_VERSION"
  local src; src="$(cd "$TOOLS" && GOFLAGS=-mod=mod go mod download -json "$mod" \
    | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')"
  local build="$TOOLS/prism-src"
  rm -rf "$build"; mkdir -p "$build"
  cp -r "$src/go.mod" "$src/go.sum" "$src/LICENSE" "$src/go" "$build/"
  chmod -R u+w "$build"
  local js="$build/go/pkg/beam/runners/prism/internal/jobservices"
  local line='net.Listen("tcp", fmt.Sprintf(":%d", port))'
  if ! grep -qF "$line" "$js/server.go"; then
    log "Prism $BEAM_VERSION: the job service's listen call changed; update run.sh"; exit 1
  fi
  sed -i 's/net.Listen("tcp", fmt.Sprintf(":%d", port))/net.Listen("tcp", listenAddress(port))/' \
    "$js/server.go"
  printf '%s' "$PRISM_LISTEN_GO" > "$js/listen_address.go"
  (cd "$build" && GOFLAGS=-mod=mod go build -o "$PRISM" ./go/cmd/prism)
  rm -rf "$build"
  echo "$PRISM_BUILD" > "$stamp"
}

setup() {
  setup_python
  setup_prism
  # bytecode of the project's own modules, so that pipeline processes do not recompile
  # them at every start (environments with PYTHONDONTWRITEBYTECODE never cache it)
  "$PY" -m compileall -q -j 0 pipelines transforms io_connectors benchmarks >/dev/null
  export PRISM_LOCATION="$PRISM"
}

cmd="${1:-help}"; shift || true
case "$cmd" in
  setup) setup ;;
  demo)
    setup
    exec "$PY" -m pipelines.demo "$@" ;;
  test)
    setup
    set +e
    "$PY" -m pytest -q -p no:cacheprovider "$@" tests
    rc=$?
    set -e
    [ "$rc" = 5 ] && { log "pytest collected no tests"; exit 1; }
    exit "$rc" ;;
  bench)
    setup
    name="${1:-bronze_ingest}"; shift || true
    exec "$PY" -m "benchmarks.$name" "$@" ;;
  prism-path) echo "$PRISM" ;;
  *) echo "usage: ./run.sh setup|demo|test|bench [name]" >&2; exit 2 ;;
esac
