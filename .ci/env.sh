# Shared by the project's scripts: where builds and tools live, and the tool versions
# that build here. Sourced, not run.

# A build cache outside the clone, reused when present (CI keeps it between runs on the
# same machine); created when missing. Override with OPSIGHT_TARGET_DIR.
export CARGO_TARGET_DIR="${OPSIGHT_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/opsight/target}"
# cargo-leptos bakes LEPTOS_OUTPUT_NAME into the `leptos` crate at compile time (it decides
# the wasm file name). Plain cargo commands (test, bench, which also builds the binary) get
# the same value, so they neither rebuild leptos nor leave a binary that asks for
# /pkg/opsight_bg.wasm.
export LEPTOS_OUTPUT_NAME=opsight
# The site (wasm, styles, public/) that .ci/build makes and compiles into the server
# (server/build.rs). Every script's cargo commands see the same value, so tests, benches
# and .ci/build share their artifacts instead of rebuilding the server for each.
export OPSIGHT_EMBED_SITE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/site"
# Release builds of the server (and the benches, which share them) erase Leptos'
# component types, as debug builds do: the server renders the same HTML and compiles in
# less time. The browser half's release build keeps its types (README, Build profiles).
RELEASE_RUSTFLAGS="--cfg erase_components"
# Node tools (wasm-opt from npm's binaryen; Debian's binaryen breaks hydration).
export OPSIGHT_TOOLS="${OPSIGHT_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/opsight/tools}"
export PATH="$HOME/.cargo/bin:$OPSIGHT_TOOLS/node_modules/.bin:$PATH"

# MLflow for the real-server tests and the reference agent (examples/mlflow-agent).
export OPSIGHT_MLFLOW_VENV="${OPSIGHT_MLFLOW_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/opsight/mlflow-venv}"

CARGO_LEPTOS_VERSION=0.3.10   # 0.3.11 needs rustc >= 1.96
BINARYEN_VERSION=132
SCHEMATHESIS_VERSION=4.32.5
MLFLOW_VERSION=3.17.2   # newest that installs: 3.18.0 pins mlflow-tracing==3.18.0, not on PyPI (2026-12-06)

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# wasm-bindgen-cli must equal the wasm-bindgen library in Cargo.lock.
wasm_bindgen_version() {
  awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' "$ROOT/Cargo.lock"
}

say() { printf '\n==> %s\n' "$*"; }
