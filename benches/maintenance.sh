#!/usr/bin/env bash
# Maintenance commands, cairn against restic, in one run: check, check --read-data, forget + prune.
#
# Usage: benches/maintenance.sh DATA_DIR WORK_DIR
#   DATA_DIR/usr   the `usr` data set (../shared/bench/make-data.sh DATA_DIR)
#   DATA_DIR/hist  ten successive source trees, one folder per release, in order; made here from
#                  HIST_GIT (a git dir) and HIST_TAGS if absent (default: git/git v2.46.0 … v2.55.0)
# Environment: CAIRN (binary; default $CARGO_TARGET_DIR/release/cairn, else target/release/cairn, else `cairn`), RESTIC (restic),
#   REPEATS (3), SCENARIOS ("usr hist"), CAIRN_COMPRESSION (3), RESTIC_COMPRESSION (auto),
#   RESTIC_CHECK_FLAGS ("": restic's default, a fresh temporary cache per check).
#
# usr:  each tool backs up its own copy of usr/ three times (initial, unchanged, after
#       mutate.py seed 7), steps alternated between the tools; then REPEATS rounds of `check` and
#       `check --read-data`, the tool order swapped every round.
# hist: each tool backs up DATA_DIR/hist/* one after the other into the same folder path (WORK/T/src,
#       cleared between), alternated; the repository and cache are then saved, and every round
#       restores them and times `forget --keep-last 3` + `prune` (cairn: `prune --instant-delete`,
#       as restic deletes at once), the order swapped every round. Once per round cairn's default
#       two-phase prune is also timed (it marks unused packs only), followed by
#       `prune --delete-after 0s` (deletes what the first marked), and cairn's one-process
#       `forget --keep-last 3 --prune --instant-delete`. After the last round both
#       repositories are checked (`check --read-data`, untimed for the table).
# Output: WORK/results.tsv (tool step round wall_s rss_kb repo_bytes cpu_s) and a table of medians
# (cpu = user + sys seconds: steadier than wall time on a machine shared with other jobs).
set -uo pipefail
DATA=$(cd "${1:?data dir}" && pwd); WORK=${2:?work dir}; mkdir -p "$WORK"; WORK=$(cd "$WORK" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
SHARED=${SHARED:-$HERE/../../shared/bench}
BUILT=${CARGO_TARGET_DIR:-$HERE/../target}/release/cairn
CAIRN=${CAIRN:-$( [ -x "$BUILT" ] && echo "$BUILT" || echo cairn)}
RESTIC=${RESTIC:-restic}
REPEATS=${REPEATS:-3}
SCENARIOS=${SCENARIOS:-usr hist}
CAIRN_COMPRESSION=${CAIRN_COMPRESSION:-3}
RESTIC_COMPRESSION=${RESTIC_COMPRESSION:-auto}
RESTIC_CHECK_FLAGS=${RESTIC_CHECK_FLAGS:-}
HIST_GIT=${HIST_GIT:-/work/.mirror/git+git/repo}
HIST_TAGS=${HIST_TAGS:-v2.46.0 v2.47.0 v2.48.0 v2.49.0 v2.50.0 v2.51.0 v2.52.0 v2.53.0 v2.54.0 v2.55.0}
export RESTIC_PASSWORD=bench CAIRN_PASSWORD=bench
RES=$WORK/results.tsv
: > "$RES"
echo "# $(date -u +%FT%TZ) cairn $("$CAIRN" version 2>/dev/null | head -1) ($(git -C "$HERE" rev-parse --short HEAD 2>/dev/null)); $("$RESTIC" version)" | tee "$WORK/header.txt"

# Per-tool commands. $1 = repository; the tool's cache is chosen by env (see env_for).
c_init()   { case $T in cairn) "$CAIRN" -q -r "$1" init --compression "$CAIRN_COMPRESSION";;
                        restic) "$RESTIC" -q -r "$1" init;; esac; }
c_backup() { case $T in cairn) "$CAIRN" -q -r "$1" backup src;;
                        restic) "$RESTIC" -q -r "$1" backup --compression "$RESTIC_COMPRESSION" src;; esac; }
c_check()  { case $T in cairn) "$CAIRN" -r "$1" check;;
                        restic) "$RESTIC" -r "$1" check $RESTIC_CHECK_FLAGS;; esac; }
c_checkrd() { case $T in cairn) "$CAIRN" -r "$1" check --read-data;;
                        restic) "$RESTIC" -r "$1" check $RESTIC_CHECK_FLAGS --read-data;; esac; }
c_forget() { case $T in cairn) "$CAIRN" -r "$1" forget --keep-last 3;;
                        restic) "$RESTIC" -r "$1" forget --keep-last 3;; esac; }
c_prune()  { case $T in cairn) "$CAIRN" -r "$1" --json prune --instant-delete;;
                        restic) "$RESTIC" -r "$1" prune --compression "$RESTIC_COMPRESSION";; esac; }
env_for() { export T=$1; export RESTIC_CACHE_DIR="$WORK/$1/cache" CAIRN_CACHE_DIR="$WORK/$1/cache"; cd "$WORK/$1"; }

# measure TOOL STEP ROUND REPO FUNC ARGS...: one timed command, appended to results.tsv.
measure() {
  local tool=$1 step=$2 round=$3 repo=$4; shift 4
  local tf; tf=$(mktemp)
  sync  # earlier steps' dirty pages are written back before the clock starts
  if /usr/bin/time -f "%e %M %U %S" -o "$tf" bash -c '"$@"' _ "$@" >"$WORK/log.$tool.$step.$round" 2>&1; then
    local size wall rss user sys; size=$(du -sb "$repo" | cut -f1); read -r wall rss user sys < "$tf"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$step" "$round" "$wall" "$rss" "$size" \
      "$(echo "$user + $sys" | bc)" | tee -a "$RES"
  else
    echo "$tool $step $round FAILED: $(tail -3 "$WORK/log.$tool.$step.$round")" | tee -a "$WORK/failures"
  fi
  rm -f "$tf"
}
export -f c_init c_backup c_check c_checkrd c_forget c_prune
export CAIRN RESTIC CAIRN_COMPRESSION RESTIC_COMPRESSION RESTIC_CHECK_FLAGS
order() { if (( $1 % 2 )); then echo cairn restic; else echo restic cairn; fi; }

if [[ " $SCENARIOS " == *" usr "* ]]; then
  [ -d "$DATA/usr" ] || { echo "no $DATA/usr: run ../shared/bench/make-data.sh $DATA"; exit 1; }
  for t in cairn restic; do rm -rf "${WORK:?}/$t"; mkdir -p "$WORK/$t/cache"; cp -a "$DATA/usr" "$WORK/$t/src"; done
  sync
  for t in cairn restic; do env_for $t; T=$t c_init "$WORK/$t/repo" >/dev/null || exit 1; done
  for t in cairn restic; do env_for $t; measure $t usr-backup-initial 1 "$WORK/$t/repo" c_backup "$WORK/$t/repo"; done
  for t in restic cairn; do env_for $t; measure $t usr-backup-unchanged 1 "$WORK/$t/repo" c_backup "$WORK/$t/repo"; done
  for t in cairn restic; do "$SHARED/mutate.py" "$WORK/$t/src" 7 >/dev/null; done
  for t in cairn restic; do env_for $t; measure $t usr-backup-mutated 1 "$WORK/$t/repo" c_backup "$WORK/$t/repo"; done
  for r in $(seq 1 "$REPEATS"); do
    for t in $(order "$r"); do env_for $t; measure $t usr-check "$r" "$WORK/$t/repo" c_check "$WORK/$t/repo"; done
    for t in $(order $((r + 1))); do env_for $t; measure $t usr-check-read-data "$r" "$WORK/$t/repo" c_checkrd "$WORK/$t/repo"; done
  done
  cd "$WORK"; for t in cairn restic; do rm -rf "${WORK:?}/$t"; done
fi

if [[ " $SCENARIOS " == *" hist "* ]]; then
  if [ ! -d "$DATA/hist" ]; then
    for tag in $HIST_TAGS; do
      mkdir -p "$DATA/hist/$tag" && git --git-dir="$HIST_GIT" archive "$tag" | tar -x -C "$DATA/hist/$tag" || exit 1
    done
  fi
  for t in cairn restic; do rm -rf "${WORK:?}/$t"; mkdir -p "$WORK/$t/cache"; env_for $t; T=$t c_init "$WORK/$t/repo" >/dev/null || exit 1; done
  i=0
  for tree in $(ls "$DATA/hist" | sort -V); do
    i=$((i + 1))
    for t in $(order $i); do
      env_for $t; rm -rf src; cp -a "$DATA/hist/$tree" src
      measure $t hist-backup-$i 1 "$WORK/$t/repo" c_backup "$WORK/$t/repo"
    done
  done
  for t in cairn restic; do cd "$WORK/$t"; rm -rf src; cp -a repo repo.orig; cp -a cache cache.orig; done
  fresh() { cd "$WORK/$1"; rm -rf repo cache; cp -a repo.orig repo; cp -a cache.orig cache; sync; }
  for r in $(seq 1 "$REPEATS"); do
    for t in $(order "$r"); do
      fresh $t; env_for $t
      measure $t hist-forget "$r" "$WORK/$t/repo" c_forget "$WORK/$t/repo"
      measure $t hist-prune "$r" "$WORK/$t/repo" c_prune "$WORK/$t/repo"
    done
    if (( r == REPEATS )); then  # the pruned repositories are whole
      for t in cairn restic; do env_for $t; measure $t hist-check-after-prune "$r" "$WORK/$t/repo" c_checkrd "$WORK/$t/repo"; done
    fi
    fresh cairn; env_for cairn  # the same in one process: one key derivation, one cache open
    measure cairn hist-forget--prune "$r" "$WORK/cairn/repo" bash -c '"$CAIRN" -r "$1" forget --keep-last 3 --prune --instant-delete' _ "$WORK/cairn/repo"
    fresh cairn; env_for cairn
    measure cairn hist-forget-2phase "$r" "$WORK/cairn/repo" c_forget "$WORK/cairn/repo"
    measure cairn hist-prune-mark "$r" "$WORK/cairn/repo" bash -c '"$CAIRN" -r "$1" --json prune' _ "$WORK/cairn/repo"
    measure cairn hist-prune-delete-marked "$r" "$WORK/cairn/repo" bash -c '"$CAIRN" -r "$1" --json prune --delete-after 0s' _ "$WORK/cairn/repo"
  done
  cd "$WORK"; for t in cairn restic; do rm -rf "${WORK:?}/$t"; done
fi

# Table: per step, the median wall time and peak RSS over the rounds, cairn/restic ratios;
# forget + prune is summed per round before taking the median.
python3 - "$RES" <<'EOF'
import sys, statistics as st, collections
rows = [l.split('\t') for l in open(sys.argv[1]) if l.strip()]
d = collections.defaultdict(list)   # (tool, step) -> [(round, wall, rss, size)]
for tool, step, rnd, wall, rss, size, cpu in rows:
    d[tool, step].append((int(rnd), float(wall), int(rss), int(size), float(cpu)))
# derived: forget + prune per round
for tool in ('cairn', 'restic'):
    f = {r: x for r, *x in d.get((tool, 'hist-forget'), [])}
    for r, w, m, s, c in d.get((tool, 'hist-prune'), []):
        if r in f:
            d[tool, 'hist-forget+prune'].append((r, f[r][0] + w, max(f[r][1], m), s, f[r][3] + c))
    b = d.get((tool, 'hist-backup-1'))
    if b:
        bs = [d[tool, k] for k in sorted({k for (t, k) in d if t == tool and k.startswith('hist-backup-')}, key=lambda k: int(k.rsplit('-', 1)[1]))]
        d[tool, 'hist-backups-total'].append((1, sum(x[0][1] for x in bs), max(x[0][2] for x in bs), bs[-1][0][3], sum(x[0][4] for x in bs)))
# cairn's one-process forget --prune is compared with restic's forget + prune
if ('cairn', 'hist-forget--prune') in d and ('restic', 'hist-forget+prune') in d:
    d['restic', 'hist-forget--prune'] = d['restic', 'hist-forget+prune']
steps = []
for (t, s) in d:
    if s not in steps and not s.startswith('hist-backup-'):
        steps.append(s)
steps = sorted(steps, key=lambda s: (s.startswith('hist'), s))
def med(v): return st.median(v) if v else None
print(f"{'step':28} {'n':>2} {'cairn s':>8} {'restic s':>8} {'ratio':>6} {'cairn cpu':>9} {'restic cpu':>10} {'ratio':>6} {'cairn MiB':>9} {'restic MiB':>10} {'ratio':>6} {'cairn repo MB':>13} {'restic repo MB':>14} {'ratio':>6}")
for s in steps:
    c, r = d.get(('cairn', s), []), d.get(('restic', s), [])
    cw, rw = med([x[1] for x in c]), med([x[1] for x in r])
    cm, rm = med([x[2] for x in c]), med([x[2] for x in r])
    cs, rs = med([x[3] for x in c]), med([x[3] for x in r])
    cc, rc = med([x[4] for x in c]), med([x[4] for x in r])
    f = lambda v, k=1: '-' if v is None else f"{v / k:.2f}"
    q = lambda a, b: '-' if a is None or b is None or b == 0 else f"{a / b:.3f}"
    print(f"{s:28} {max(len(c), len(r)):>2} {f(cw):>8} {f(rw):>8} {q(cw, rw):>6} {f(cc):>9} {f(rc):>10} {q(cc, rc):>6} {f(cm, 1024):>9} {f(rm, 1024):>10} {q(cm, rm):>6} {f(cs, 1e6):>13} {f(rs, 1e6):>14} {q(cs, rs):>6}")
print("all rounds (wall s): " + "; ".join(f"{t} {s}: " + " ".join(f"{x[1]:.2f}" for x in sorted(v)) for (t, s), v in sorted(d.items()) if not s.startswith('hist-backup-')))
EOF
[ -s "$WORK/failures" ] && { echo "FAILURES:"; cat "$WORK/failures"; }
exit 0
