#!/usr/bin/env bash
# The FUSE mount, cairn against restic, in one run: time to the first listing, `find` over the
# mounted latest snapshot, `cat` of every file in it; the same find and cat on the source tree.
#
# Usage: benches/mount.sh DATA_DIR WORK_DIR
#   DATA_DIR/usr   the `usr` data set (../shared/bench/make-data.sh DATA_DIR)
# Environment: CAIRN (binary; default $CARGO_TARGET_DIR/release/cairn, else target/release/cairn,
#   else `cairn`), RESTIC (restic), REPEATS (3), CAIRN_MOUNT_FLAGS ("").
#
# Each tool backs up its own copy of usr/ once (untimed). Then REPEATS rounds, the tool order
# swapped every round; per tool and round, a fresh mount process (so nothing of the last round
# is in the mount's memory or the kernel's page cache of the mount; the repository's files are
# in the page cache for both):
#   ready  from starting `mount` until `ls MNT/snapshots` shows a snapshot (key derivation,
#          index load, mounting);
#   find   `find MNT/snapshots/latest/ > /dev/null` (every folder listed, cold);
#   cat    `find … -type f -print0 | xargs -0 cat > /dev/null` (every file read);
# then SIGINT, and the mount must be gone; the mount process's peak RSS and CPU seconds are
# recorded. The source tree's find and cat are timed per round too. Output: WORK/results.tsv
# (tool step round value) and a table of medians and ratios, and per-round ratios.
set -uo pipefail
DATA=$(cd "${1:?data dir}" && pwd); WORK=${2:?work dir}; mkdir -p "$WORK"; WORK=$(cd "$WORK" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
BUILT=${CARGO_TARGET_DIR:-$HERE/../target}/release/cairn
CAIRN=${CAIRN:-$( [ -x "$BUILT" ] && echo "$BUILT" || echo cairn)}
RESTIC=${RESTIC:-restic}
REPEATS=${REPEATS:-3}
CAIRN_MOUNT_FLAGS=${CAIRN_MOUNT_FLAGS:-}
export RESTIC_PASSWORD=bench CAIRN_PASSWORD=bench
RES=$WORK/results.tsv
: > "$RES"; : > "$WORK/failures"
echo "# $(date -u +%FT%TZ) cairn $("$CAIRN" version 2>/dev/null | head -1) ($(git -C "$HERE" rev-parse --short HEAD 2>/dev/null)); $("$RESTIC" version); load $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$WORK/header.txt"
[ -d "$DATA/usr" ] || { echo "no $DATA/usr: run ../shared/bench/make-data.sh $DATA"; exit 1; }

env_for() { export T=$1; export RESTIC_CACHE_DIR="$WORK/$1/cache" CAIRN_CACHE_DIR="$WORK/$1/cache"; cd "$WORK/$1"; }
now() { echo "$EPOCHREALTIME"; }
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" | tee -a "$RES"; }
# timed TOOL STEP ROUND CMD...: wall seconds of one command.
timed() {
  local tool=$1 step=$2 round=$3; shift 3
  sync
  local t0; t0=$(now)
  if "$@" >/dev/null 2>"$WORK/log.$tool.$step.$round"; then
    record "$tool" "$step" "$round" "$(echo "$(now) - $t0" | bc)"
  else
    echo "$tool $step $round FAILED: $(tail -3 "$WORK/log.$tool.$step.$round")" | tee -a "$WORK/failures"
  fi
}
find_all() { find "$1/" > /dev/null; }
cat_all() { (cd "$1" && find . -type f -print0 | xargs -0 -r cat > /dev/null); }
export -f find_all cat_all

for t in cairn restic; do
  rm -rf "${WORK:?}/$t"; mkdir -p "$WORK/$t/cache" "$WORK/$t/mnt"; cp -a "$DATA/usr" "$WORK/$t/src"
done
sync
env_for cairn; "$CAIRN" -q -r "$WORK/cairn/repo" init >/dev/null && "$CAIRN" -q -r "$WORK/cairn/repo" backup src >/dev/null || exit 1
env_for restic; "$RESTIC" -q -r "$WORK/restic/repo" init >/dev/null && "$RESTIC" -q -r "$WORK/restic/repo" backup src >/dev/null || exit 1

# mount_round TOOL ROUND: mount, time ready/find/cat, unmount.
mount_round() {
  local t=$1 r=$2 mnt="$WORK/$1/mnt" pid t0
  env_for "$t"
  # The tool's repository and cache in the page cache, whatever ran before.
  cat_all "$WORK/$t/repo"; cat_all "$WORK/$t/cache"
  sync
  t0=$(now)
  case $t in
    cairn) "$CAIRN" -q -r "$WORK/cairn/repo" mount $CAIRN_MOUNT_FLAGS "$mnt" >"$WORK/log.$t.mount.$r" 2>&1 & pid=$!;;
    restic) "$RESTIC" -r "$WORK/restic/repo" mount "$mnt" >"$WORK/log.$t.mount.$r" 2>&1 & pid=$!;;
  esac
  until ls "$mnt/snapshots" 2>/dev/null | grep -q .; do
    kill -0 "$pid" 2>/dev/null || { echo "$t mount $r FAILED: $(tail -3 "$WORK/log.$t.mount.$r")" | tee -a "$WORK/failures"; return; }
    sleep 0.005
  done
  record "$t" ready "$r" "$(echo "$(now) - $t0" | bc)"
  # cairn keeps the absolute source path; restic puts a single backed-up folder at the root.
  local snap="$mnt/snapshots/latest$WORK/$t/src"
  [ "$t" = restic ] && snap="$mnt/snapshots/latest/src"
  timed "$t" find "$r" find_all "$snap"
  timed "$t" cat "$r" cat_all "$snap"
  record "$t" rss_mib "$r" "$(awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$pid/status")"
  # CPU seconds (user + system) of the mount process over the whole round.
  record "$t" cpu_s "$r" "$(awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$pid/stat")"
  kill -INT "$pid"; wait "$pid"
  mountpoint -q "$mnt" && { echo "$t $r: still mounted after SIGINT" | tee -a "$WORK/failures"; fusermount3 -uz "$mnt"; }
}

for r in $(seq 1 "$REPEATS"); do
  if (( r % 2 )); then order="cairn restic"; else order="restic cairn"; fi
  for t in $order; do mount_round "$t" "$r"; done
  timed source find "$r" find_all "$WORK/cairn/src"
  timed source cat "$r" cat_all "$WORK/cairn/src"
done
cd "$WORK"; for t in cairn restic; do rm -rf "${WORK:?}/$t"; done

python3 - "$RES" <<'EOF'
import sys, statistics as st, collections
d = collections.defaultdict(list)
for l in open(sys.argv[1]):
    if l.strip():
        tool, step, rnd, v = l.split('\t')
        d[tool, step].append(float(v))
med = lambda t, s: st.median(d[t, s]) if d.get((t, s)) else None
f = lambda v: '-' if v is None else f"{v:.2f}"
q = lambda a, b: '-' if a is None or not b else f"{a / b:.3f}"
print(f"{'step':8} {'cairn':>8} {'restic':>8} {'source':>8} {'cairn/restic':>13} {'cairn/source':>13}")
for s in ('ready', 'find', 'cat', 'rss_mib', 'cpu_s'):
    c, r, o = med('cairn', s), med('restic', s), med('source', s)
    print(f"{s:8} {f(c):>8} {f(r):>8} {f(o):>8} {q(c, r):>13} {q(c, o):>13}")
# The same round's two figures divided, then the median: steadier on a shared machine.
for s in ('ready', 'find', 'cat', 'cpu_s'):
    c, r = d.get(('cairn', s), []), d.get(('restic', s), [])
    if c and len(c) == len(r):
        pr = [a / b for a, b in zip(c, r) if b]
        print(f"{s}: per-round cairn/restic {' '.join(f'{x:.3f}' for x in pr)}, median {st.median(pr):.3f}")
print("all rounds: " + "; ".join(f"{t} {s}: " + " ".join(f"{x:.2f}" for x in v) for (t, s), v in sorted(d.items())))
EOF
[ -s "$WORK/failures" ] && { echo "FAILURES:"; cat "$WORK/failures"; }
exit 0
