# Sourced by the bench scripts: strict mode, the workspace root as the working directory,
# `out` (bench/out, generated files and logs) and `target` (cargo's target directory).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="$root/bench/out"
mkdir -p "$out"
target="${CARGO_TARGET_DIR:-$root/target}"
