#!/usr/bin/env bash
# Build every fuzz target, then run each for SECONDS (default 5). Exits non-zero if the build
# fails or any target crashes (panic, failed assertion, sanitizer report, timeout, OOM); every
# target runs even after a crash, and a summary is printed at the end.
#
# Usage: fuzz/smoke.sh [SECONDS] [extra libFuzzer flags...]
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz --locked`).
# Honours CARGO_TARGET_DIR (else cargo's default, fuzz/target) and FUZZ_TOOLCHAIN (default nightly).
set -uo pipefail

cd "$(dirname "$0")" || exit 2
secs=${1:-5}
shift || true
toolchain=${FUZZ_TOOLCHAIN:-nightly}
cargo=(cargo "+$toolchain" fuzz)
# cargo and cargo-fuzz both read CARGO_TARGET_DIR from the environment; pass it explicitly too so
# the binaries are found where they were built.
target_dir=()
if [[ -n "${CARGO_TARGET_DIR:-}" ]]; then
  target_dir=(--target-dir "$CARGO_TARGET_DIR")
fi

if ! "${cargo[@]}" --help >/dev/null 2>&1; then
  echo "smoke.sh: cargo-fuzz or the $toolchain toolchain is missing (cargo install cargo-fuzz --locked)" >&2
  exit 2
fi

echo "== building all fuzz targets"
if ! "${cargo[@]}" build "${target_dir[@]}"; then
  echo "smoke.sh: build failed" >&2
  exit 1
fi

mapfile -t targets < <("${cargo[@]}" list)
if [[ ${#targets[@]} -eq 0 ]]; then
  echo "smoke.sh: no fuzz targets found" >&2
  exit 1
fi

logdir=$(mktemp -d)
trap 'rm -rf "$logdir"' EXIT
failed=()
summary=()
for t in "${targets[@]}"; do
  echo "== $t (${secs}s)"
  log="$logdir/$t.log"
  # Grow corpus/<target>; also read the hand-made seeds/<target> when there are some.
  corpora=("corpus/$t")
  mkdir -p "corpus/$t"
  [[ -d "seeds/$t" ]] && corpora+=("seeds/$t")
  # -timeout: one input running this long is a hang, reported as a crash.
  "${cargo[@]}" run "${target_dir[@]}" "$t" "${corpora[@]}" -- \
    -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 "$@" >"$log" 2>&1
  rc=$?
  stats=$(grep -E '^Done [0-9]+ runs' "$log" | tail -n 1)
  execs=$(grep -E '^stat::average_exec_per_sec' "$log" | awk '{print $2}' | tail -n 1)
  if [[ $rc -eq 0 ]]; then
    summary+=("ok     $t: ${stats:-?} (${execs:-?} exec/s)")
    tail -n 3 "$log"
  else
    failed+=("$t")
    summary+=("CRASH  $t (exit $rc)")
    echo "---- $t failed (exit $rc); last lines of its output:"
    tail -n 60 "$log"
    echo "----"
  fi
done

echo
echo "== summary"
printf '%s\n' "${summary[@]}"
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "crashed: ${failed[*]} (reproducers under fuzz/artifacts/<target>/;" \
    "replay with: cargo +$toolchain fuzz run <target> <file>)" >&2
  exit 1
fi
