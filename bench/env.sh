# shellcheck shell=bash
# shellcheck disable=SC2034 # `out` and `target` are for the scripts that source this
# Sourced by the bench scripts: strict mode, the workspace root as the working directory,
# `out` (bench/out, generated files and logs) and `target` (cargo's target directory).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="$root/bench/out"
mkdir -p "$out"
target="${CARGO_TARGET_DIR:-$root/target}"

# gen NAME METERS DAYS: bench/out/NAME.csv, a wide file from `$mf generate` (seed 7), kept
# between runs. Name files by their size so that a cached file of another size is never used.
gen() {
  # shellcheck disable=SC2154 # `mf` (the binary) is set by the script that calls gen
  [ -s "$out/$1.csv" ] || "$mf" generate --format wide --meters "$2" --days "$3" --seed 7 --out "$out/$1.csv" 2>/dev/null
}

# before REV PACKAGE BIN...: builds BINs of PACKAGE (release) from commit REV in a worktree
# (bench/out/worktree-REV, the same target directory, so dependencies are shared) and copies
# each to bench/out/REV-BIN: the "before" of a before/after table measured in the same run.
before() {
  local rev pkg wt b bins=()
  rev=$(git rev-parse --short "$1") pkg=$2
  shift 2
  for b in "$@"; do bins+=(--bin "$b"); done
  wt="$out/worktree-$rev"
  [ -d "$wt" ] || git worktree add -q --detach "$wt" "$rev"
  (cd "$wt" && CARGO_TARGET_DIR="$target" cargo build --release -q -p "$pkg" "${bins[@]}")
  for b in "$@"; do cp "$target/release/$b" "$out/$rev-$b"; done
  # The worktree's build replaced $target/release/BIN: put this tree's back (a no-op build
  # re-links it), or the "after" rows would measure the "before" binary too.
  cargo build --release -q -p "$pkg" "${bins[@]}"
}
