#!/usr/bin/env bash
# Deploys the reference agent the way the seed articles describe, on this machine:
#   1. a tracking server (SQLite store in ./mlruns-local) unless MLFLOW_TRACKING_URI is set,
#   2. log the agent from code, register a new version of opsight-analyst, alias prod -> it,
#   3. serve models:/opsight-analyst@prod with `mlflow models serve` (JSON, port 5001),
#   4. the same agent on AgentServer (SSE streaming, port 8001).
# Needs a venv with requirements.txt (`.ci/setup --test` makes one): VENV=path, default
# ~/.cache/opsight/mlflow-venv. Ctrl-C stops everything.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/opsight/mlflow-venv}"
export PATH="$venv/bin:$PATH"   # `models serve --env-manager local` execs uvicorn by name
command -v mlflow >/dev/null || { echo "no mlflow in $venv/bin: run .ci/setup --test or set VENV"; exit 1; }
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT INT TERM
wait_for() { for _ in $(seq 240); do curl -sf "$1" >/dev/null && return 0; sleep 0.5; done; echo "not ready: $1"; exit 1; }

if [ -z "${MLFLOW_TRACKING_URI:-}" ]; then
  mkdir -p "$here/mlruns-local"
  mlflow server --backend-store-uri "sqlite:///$here/mlruns-local/mlflow.db" \
    --default-artifact-root "$here/mlruns-local/artifacts" --host 127.0.0.1 --port 5000 &
  pids+=($!)
  export MLFLOW_TRACKING_URI=http://127.0.0.1:5000
  wait_for "$MLFLOW_TRACKING_URI/health"
fi
(cd "$here" && python log_and_register.py)
mlflow models serve -m models:/opsight-analyst@prod --env-manager local -h 127.0.0.1 -p "${SERVE_PORT:-5001}" &
pids+=($!)
(cd "$here" && exec python agent_server.py --port "${AGENT_SERVER_PORT:-8001}") &
pids+=($!)
wait_for "http://127.0.0.1:${SERVE_PORT:-5001}/ping"
wait_for "http://127.0.0.1:${AGENT_SERVER_PORT:-8001}/health"
echo "models serve: http://127.0.0.1:${SERVE_PORT:-5001}/invocations (models:/opsight-analyst@prod)"
echo "AgentServer:  http://127.0.0.1:${AGENT_SERVER_PORT:-8001}/invocations (streaming)"
echo "tracking:     $MLFLOW_TRACKING_URI"
wait
