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

# worktree REV: prints bench/out/worktree-REV, a checkout of commit REV made if missing.
worktree() {
  [ -d "$out/worktree-$1" ] || git worktree add -q --detach "$out/worktree-$1" "$1"
  echo "$out/worktree-$1"
}

# before REV PACKAGE BIN...: builds BINs of PACKAGE (release) from commit REV in a worktree
# (bench/out/worktree-REV) and copies each to bench/out/REV-BIN: the "before" of a
# before/after table measured in the same run. A binary already there is reused (a commit's
# build never changes). The worktree builds into a target directory of its own
# (bench/out/target-before, kept between runs): sharing this tree's made cargo take one tree's
# workspace libraries for the other's (same names, same metadata hash), which measured the
# wrong binary once and failed to build once.
before() {
  local rev pkg wt b bins=() missing=0
  rev=$(git rev-parse --short "$1") pkg=$2
  shift 2
  for b in "$@"; do
    bins+=(--bin "$b")
    [ -x "$out/$rev-$b" ] || missing=1
  done
  [ "$missing" = 1 ] || return 0
  wt=$(worktree "$rev")
  (cd "$wt" && CARGO_TARGET_DIR="$out/target-before" cargo build --release -q -p "$pkg" "${bins[@]}")
  for b in "$@"; do cp "$out/target-before/release/$b" "$out/$rev-$b"; done
}
