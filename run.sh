#!/usr/bin/env bash
# Project entry point.  ./run.sh setup | demo | test | stress-test | bench [name] | prism-path
#                      | jobserver-up | jobserver-down | dask-up | dask-down
#   setup  idempotent: .venv with pinned dependencies, the project itself, and
#          Beam's Prism runner and Python SDK boot program built with Go at the SDK's
#          release tag.
#   demo   setup, then the Bronze flow on embedded defaults (NATS started here).
#   test   setup, then the test suite (fixtures start nats-server themselves).
#   stress-test  setup, then the suite three times in a row with a CPU hog on one core.
#   jobserver-up / jobserver-down   a local Prism job service + Beam worker pool in the
#          background; `up` prints JOB_ENDPOINT=... and WORKER_POOL=... lines to eval.
#   dask-up / dask-down   a local Dask scheduler + 2 workers in the background; `up`
#          prints DASK_ADDRESS=tcp://... to eval once both workers are registered.
set -euo pipefail
cd "$(dirname "$0")"
ROOT="$(pwd)"
BEAM_VERSION="2.77.0"            # one Beam release for the SDK, Prism and the Flink job server
VENV="$ROOT/.venv"
TOOLS="$ROOT/.tools"
PRISM="$TOOLS/bin/prism"
BOOT="$TOOLS/bin/beam-python-boot"   # PROCESS environments: Beam's Python boot program
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

# Prism is built from Beam's Go module with two small fixes, applied to a copy of the
# module's go/ tree by text replacements that fail loudly if the code
# they replace has moved (a new Beam release must be re-checked):
# 1. its job service (which also serves the SDK workers' endpoints) listens on every
#    interface (net.Listen(":port")); here on PRISM_LISTEN_HOST, default 127.0.0.1;
# 2. metrics: a bundle's counters whose short ids the runner has not resolved yet are
#    parked in a map keyed by short id, so two bundles finishing at the same time with
#    the same new counter lose one bundle's values (seen as missing acks on /metrics);
#    here the contribution and the id resolution run under one lock.
PRISM_BUILD="$BEAM_VERSION+marketlake.2"

patch_prism_source() {   # $1: the go/ tree's parent (a writable copy of the module)
  "$PY" - "$1" <<'PATCH'
import pathlib, sys
root = pathlib.Path(sys.argv[1]) / "go/pkg/beam/runners/prism/internal"
def replace(rel, old, new):
    path = root / rel
    text = path.read_text()
    if text.count(old) != 1:
        sys.exit(f"run.sh: Prism source changed, cannot patch {rel}: {old.splitlines()[0]!r}")
    path.write_text(text.replace(old, new))
replace("jobservices/server.go", 'net.Listen("tcp", fmt.Sprintf(":%d", port))',
        'net.Listen("tcp", listenAddress(port))')
(root / "jobservices/listen_address.go").write_text("""package jobservices

import (
\t"net"
\t"os"
\t"strconv"
)

// listenAddress: PRISM_LISTEN_HOST, default the loopback interface (marketlake, run.sh).
func listenAddress(port int) string {
\thost := os.Getenv("PRISM_LISTEN_HOST")
\tif host == "" {
\t\thost = "127.0.0.1"
\t}
\treturn net.JoinHostPort(host, strconv.Itoa(port))
}
""")
(root / "metric_ids_lock.go").write_text("""package internal

import "sync"

// metricShortIDsMu: contributing a bundle's metrics and resolving unknown short ids happen
// together, so concurrent bundles cannot overwrite each other's parked values (marketlake).
var metricShortIDsMu sync.Mutex
""")
for indent, call in (("\t\t\t", "index, unknownIDs := j.ContributeTentativeMetrics(resp)"),
                     ("\t", "unknownIDs := j.ContributeFinalMetrics(resp)")):
    block = (f"{indent}{call}\n{indent}if len(unknownIDs) > 0 {{\n"
             f"{indent}\tmd := wk.MonitoringMetadata(ctx, unknownIDs)\n"
             f"{indent}\tj.AddMetricShortIDs(md)\n{indent}}}\n")
    replace("stage.go", block, f"{indent}metricShortIDsMu.Lock()\n{block}"
                               f"{indent}metricShortIDsMu.Unlock()\n")
PATCH
}

setup_prism() {
  local stamp="$TOOLS/prism.version"
  if [ -x "$PRISM" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$PRISM_BUILD" ]; then return; fi
  if ! command -v go >/dev/null 2>&1; then
    log "Go is required to build Beam's Prism runner (no binary can be downloaded here)"; exit 1
  fi
  log "building Prism v$BEAM_VERSION with Go (a few minutes)"
  mkdir -p "$TOOLS/bin"
  local mod="github.com/apache/beam/sdks/v2@v$BEAM_VERSION"
  local src; src="$(cd "$TOOLS" && GOFLAGS=-mod=mod go mod download -json "$mod" \
    | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')"
  local build="$TOOLS/prism-src"
  rm -rf "$build"; mkdir -p "$build"
  cp -r "$src/go.mod" "$src/go.sum" "$src/LICENSE" "$src/go" "$build/"
  chmod -R u+w "$build"
  patch_prism_source "$build"
  (cd "$build" && GOFLAGS=-mod=mod go build -o "$PRISM" ./go/cmd/prism)
  rm -rf "$build"
  echo "$PRISM_BUILD" > "$stamp"
}

# Beam's Python SDK boot program (the SDK container's entry point), for
# --environment_type=PROCESS.  Prism starts it as `boot --id='<id>' ...` with the quotes
# inside the argument, which boot would keep in the worker id, so a wrapper strips them,
# runs the SDK in this venv (no per-worker virtualenv) and puts the venv's python first.
setup_boot() {
  local stamp="$TOOLS/boot.version" want="$BEAM_VERSION-2"     # -N: wrapper revision
  if [ -x "$BOOT" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then return; fi
  log "building Beam's Python SDK boot program v$BEAM_VERSION with go install"
  mkdir -p "$TOOLS/bin"
  GOBIN="$TOOLS/bin" GOFLAGS=-mod=mod go install "github.com/apache/beam/sdks/v2/python/container@v$BEAM_VERSION"
  cat > "$BOOT" <<EOF_BOOT
#!/usr/bin/env bash
# Generated by run.sh setup: Beam's Python boot program for PROCESS environments.
args=()
for a in "\$@"; do
  if [[ \$a == --id=\'*\' ]]; then a="--id=\${a:6:\${#a}-7}"; fi
  args+=("\$a")
done
# Staged files (pickled session, options) in a folder of this worker's own: Prism numbers
# jobs from job-001 in every process, so worker ids repeat across instances.
base="\${TMPDIR:-/tmp}/marketlake-boot"
mkdir -p "\$base"
find "\$base" -mindepth 1 -maxdepth 1 -mtime +7 -exec rm -rf {} + 2>/dev/null
# (boot also writes pipeline_options.json into its working folder: that folder too)
dir="\$(mktemp -d "\$base/w-XXXXXXXX")"
cd "\$dir" || exit 1
export PATH="$VENV/bin:\$PATH" RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT=1
exec "$TOOLS/bin/container" "\${args[@]}" --semi_persist_dir="\$dir"
EOF_BOOT
  chmod +x "$BOOT"
  echo "$want" > "$stamp"
}

setup() {
  setup_python
  setup_prism
  setup_boot
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
  stress-test)
    setup
    exec "$PY" -m tests.under_load "$@" ;;
  bench)
    setup
    name="${1:-bronze_ingest}"; shift || true
    exec "$PY" -m "benchmarks.$name" "$@" ;;
  prism-path) echo "$PRISM" ;;
  jobserver-up|jobserver-down|jobserver-status|dask-up|dask-down|dask-status)
    setup >&2                      # stdout carries only the lines to eval
    exec "$PY" -m pipelines.cluster "$cmd" "$@" ;;
  *) echo "usage: ./run.sh setup|demo|test|stress-test|bench [name]|jobserver-up|jobserver-down|dask-up|dask-down" >&2
     exit 2 ;;
esac
