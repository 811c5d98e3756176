#!/usr/bin/env bash
# Backup and restore through S3 (issue 13), cairn against restic, on a local s3s-fs server, in one run.
#
# Usage: benches/s3.sh DATA_DIR WORK_DIR
#   DATA_DIR/usr   the `usr` data set (../shared/bench/make-data.sh DATA_DIR); read in place, never written
#   WORK_DIR       the server's root (WORK/s3root, bucket `bench`), caches, restore targets, logs, results
# Environment: CAIRN (binary; default $CARGO_TARGET_DIR/release/cairn, else target/release/cairn, else `cairn`),
#   RESTIC (restic), S3S_FS (s3s-fs on PATH, else ~/.cargo/bin/s3s-fs; `cargo install s3s-fs@0.14.1
#   --features binary --locked`), PORT (19400), REPEATS (3), STEPS ("main pack limit"),
#   PACK_SIZES ("4 16 64", MiB, cairn only), LIMIT_SETS (see limit below), VERIFY (1: diff -r the
#   round-1 restores against the source, untimed), RESTORE_DIR (WORK: where the restore targets
#   TOOL-restore are made; a tmpfs such as /dev/shm/x takes the target file system out of the
#   comparison: on the ext4 of the machine this was written on, creating ~50k inodes soon after
#   deleting as many cost up to 20 s of kernel time in find_inode_bit/recently_deleted, whichever
#   tool restored), REPORT_ONLY (see Output). Both tools keep their defaults (compression: cairn
#   zstd 3, restic auto; 5 uploads in flight each; 16 MiB packs each).
#
# main:  every round, each tool inits a fresh repository (untimed) and backs up DATA/usr (timed); then
#        each restores `latest` into an empty folder with the cache its backup left (restore), then
#        with a fresh empty cache (restore-cold); the tool order is swapped every round and between
#        the backup and restore steps. Round 1's restores are compared with the source (diff -r).
# pack:  every round, cairn only: for each PACK_SIZES (order rotated per round) init --pack-size P,
#        backup, restore (warm cache), as in main.
# limit: every round, cairn only: for each LIMIT_SETS entry KIBS:PATH[,PATH...] (paths relative to
#        DATA/usr) a backup into a fresh repository and cache with --limit-upload KIBS, and the same
#        backup without a limit (once per distinct path set). Achieved rate = bytes up (from
#        --request-stats) / wall time. Default: 20480 (20 MiB/s) on lib (~720 MB read, ~230 MB
#        uploaded: usr compresses ~3x, so this is the ~200 MB *upload*), 20480 on share/doc +
#        share/locale (~280 MB read, ~110 MB up) and 5120 on share/doc (~117 MB read, ~49 MB up).
# Requests: the server logs one "resolved route, op: X" line per request (RUST_LOG=s3s::ops=debug);
#   each timed command's share of the log is counted (both tools), and cairn's own --request-stats
#   line is parsed as well. Per GB = per 1e9 bytes of source (du -sb, apparent size).
# Output: WORK/results.tsv (tool step round wall_s rss_kb repo_bytes cpu_s srv_requests srv_ops
#   get head put list delete retries bytes_down bytes_up; the last eight are cairn's own figures, - for
#   restic), WORK/sizes.tsv, WORK/loadavg.txt, logs WORK/log.TOOL.STEP.ROUND, then tables of medians
#   (REPORT_ONLY=1 prints the tables again from an existing WORK/results.tsv and WORK/sizes.tsv).
# The machine is shared: compare medians and cairn/restic ratios, not single absolute times.
set -uo pipefail
DATA=$(cd "${1:?data dir}" && pwd); WORK=${2:?work dir}; mkdir -p "$WORK"; WORK=$(cd "$WORK" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
BUILT=${CARGO_TARGET_DIR:-$HERE/../target}/release/cairn
CAIRN=${CAIRN:-$( [ -x "$BUILT" ] && echo "$BUILT" || echo cairn)}
RESTIC=${RESTIC:-restic}
S3S_FS=${S3S_FS:-$(command -v s3s-fs || echo "$HOME/.cargo/bin/s3s-fs")}
PORT=${PORT:-19400}
REPEATS=${REPEATS:-3}
STEPS=${STEPS:-main pack limit}
PACK_SIZES=${PACK_SIZES:-4 16 64}
LIMIT_SETS=${LIMIT_SETS:-20480:lib 20480:share/doc,share/locale 5120:share/doc}
VERIFY=${VERIFY:-1}
RDIR=${RESTORE_DIR:-$WORK}; mkdir -p "$RDIR"; RDIR=$(cd "$RDIR" && pwd)
BUCKET=bench
S3ROOT=$WORK/s3root
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
export AWS_ENDPOINT_URL=http://127.0.0.1:$PORT AWS_ALLOW_HTTP=true
export RESTIC_PASSWORD=bench CAIRN_PASSWORD=bench
export CAIRN RESTIC PORT BUCKET
[ -d "$DATA/usr" ] || { echo "no $DATA/usr: run ../shared/bench/make-data.sh $DATA"; exit 1; }
RES=$WORK/results.tsv; LOAD=$WORK/loadavg.txt; SRVLOG=$WORK/s3s.log
if [ -z "${REPORT_ONLY:-}" ]; then  # the whole run (not indented)
for b in "$CAIRN" "$RESTIC" "$S3S_FS"; do command -v "$b" >/dev/null || { echo "not found: $b (set CAIRN, RESTIC, S3S_FS)"; exit 1; }; done
: > "$RES"; : > "$LOAD"; rm -f "$WORK/failures"
echo "# $(date -u +%FT%TZ) $("$CAIRN" version 2>/dev/null | head -1) ($CAIRN; $(git -C "$HERE" rev-parse --short HEAD 2>/dev/null)); $("$RESTIC" version); $("$S3S_FS" --version); $(nproc) cores; restore targets in $RDIR ($(stat -f -c %T "$RDIR")); load $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$WORK/header.txt"
echo "start $(date -u +%T) $(cat /proc/loadavg)" >> "$LOAD"

# The server: a fresh root, one bucket (a folder), request log for counting.
rm -rf "$S3ROOT"; mkdir -p "$S3ROOT/$BUCKET"
RUST_LOG=s3s::ops=debug "$S3S_FS" --host 127.0.0.1 --port "$PORT" --access-key test --secret-key test "$S3ROOT" > "$SRVLOG" 2>&1 &
SRV=$!
trap 'kill $SRV 2>/dev/null' EXIT
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.2; done
kill -0 $SRV 2>/dev/null || { echo "s3s-fs did not start: $(tail -3 "$SRVLOG")"; exit 1; }

# Per-tool commands. $1 = repository prefix in the bucket; the cache comes from env (env_for).
url() { case $T in cairn) echo "s3://$BUCKET/$1";; restic) echo "s3:http://127.0.0.1:$PORT/$BUCKET/$1";; esac; }
c_init()    { local u; u=$(url "$1"); shift
              case $T in cairn) "$CAIRN" -q -r "$u" init "$@";; restic) "$RESTIC" -q -r "$u" init;; esac; }
c_backup()  { local u; u=$(url "$1"); shift
              case $T in cairn) "$CAIRN" -q --request-stats -r "$u" backup "$@";;
                         restic) "$RESTIC" -q -r "$u" backup "$@";; esac; }
c_backup_limit() { local u kib=$2; u=$(url "$1"); shift 2
              "$CAIRN" -q --request-stats --limit-upload "$kib" -r "$u" backup "$@"; }
c_restore() { local u; u=$(url "$1")
              case $T in cairn) "$CAIRN" -q --request-stats -r "$u" restore latest --target "$2";;
                         restic) "$RESTIC" -q -r "$u" restore latest --target "$2";; esac; }
export -f url c_init c_backup c_backup_limit c_restore
env_for() { export T=$1 RESTIC_CACHE_DIR="$WORK/$1/${2:-cache}" CAIRN_CACHE_DIR="$WORK/$1/${2:-cache}"
            mkdir -p "$WORK/$1"; cd "$WORK/$1"; }
fresh_cache() { rm -rf "${WORK:?}/$1/${2:-cache}"; mkdir -p "$WORK/$1/${2:-cache}"; }
drop_repo() { rm -rf "${S3ROOT:?}/$BUCKET/${1:?}"; }

# measure TOOL STEP ROUND PREFIX FUNC ARGS...: one timed command, appended to results.tsv with the
# server's request count for its duration and (cairn) its --request-stats line.
measure() {
  local tool=$1 step=$2 round=$3 prefix=$4; shift 4
  local tf log=$WORK/log.$tool.$step.$round off; tf=$(mktemp)
  sync  # earlier steps' dirty pages are written back before the clock starts
  off=$(stat -c %s "$SRVLOG")
  if /usr/bin/time -f "%e %M %U %S" -o "$tf" bash -c '"$@"' _ "$@" >"$log" 2>&1; then
    local size wall rss user sys ops total stats
    size=$(du -sb "$S3ROOT/$BUCKET/$prefix" 2>/dev/null | cut -f1); read -r wall rss user sys < "$tf"
    ops=$(tail -c +$((off + 1)) "$SRVLOG" | grep -a -o 'resolved route, op: [A-Za-z0-9]*' | awk '{print $4}' | sort | uniq -c | awk '{printf "%s%s=%s", s, $2, $1; s=","}')
    total=$(echo "$ops" | tr ',' '\n' | awk -F= '{n += $2} END {print n + 0}')
    # requests: LOC: N GET, N HEAD, N PUT, N LIST, N DELETE, N retries; N B down, N B up
    stats=$(grep -a '^requests: ' "$log" | tail -1 | sed 's/^requests: .*: \([0-9]* GET\)/\1/' |
            grep -o '[0-9][0-9]* \(GET\|HEAD\|PUT\|LIST\|DELETE\|retries\|B down\|B up\)' | awk '{print $1}' | paste -sd'\t')
    [ -n "$stats" ] || stats=$(printf -- '-\t-\t-\t-\t-\t-\t-\t-')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$step" "$round" "$wall" "$rss" "${size:-0}" \
      "$(echo "$user + $sys" | bc)" "$total" "${ops:--}" "$stats" | tee -a "$RES"
  else
    echo "$tool $step $round FAILED: $(tail -3 "$log")" | tee -a "$WORK/failures"
  fi
  rm -f "$tf"
}
order() { if (( $1 % 2 )); then echo cairn restic; else echo restic cairn; fi; }
rotate() { local n=$1; shift; local a=("$@"); local k=$(( n % ${#a[@]} )); echo "${a[@]:k}" "${a[@]:0:k}"; }
verify() {  # verify TOOL DIR: the restored usr must equal the source
  local out; out=$(diff -rq --no-dereference "$DATA/usr" "$2$DATA/usr" 2>&1 | head -5)
  if [ -n "$out" ]; then echo "$1 restore differs from the source: $out" | tee -a "$WORK/failures"; else echo "# $1 restore verified (diff -r)"; fi
}

# Source sizes for the per-GB figures.
{ printf 'usr\t%s\n' "$(du -sb "$DATA/usr" | cut -f1)"
  for e in $LIMIT_SETS; do s=${e#*:}; n=$(echo "$s" | tr ',/' '+_')
    ( cd "$DATA/usr" && printf '%s\t%s\n' "$n" "$(du -scb ${s//,/ } | tail -1 | cut -f1)" ); done | sort -u
} > "$WORK/sizes.tsv"

for r in $(seq 1 "$REPEATS"); do
  echo "round $r start $(date -u +%T) $(cat /proc/loadavg)" >> "$LOAD"
  if [[ " $STEPS " == *" main "* ]]; then
    for t in $(order "$r"); do
      fresh_cache $t; env_for $t; drop_repo $t-r$r
      c_init $t-r$r >/dev/null || { echo "$t init failed" | tee -a "$WORK/failures"; continue; }
      measure $t backup "$r" $t-r$r c_backup $t-r$r "$DATA/usr"
    done
    for t in $(order $((r + 1))); do
      env_for $t; rm -rf "$RDIR/$t-restore"
      measure $t restore "$r" $t-r$r c_restore $t-r$r "$RDIR/$t-restore"
      (( r == 1 && VERIFY )) && verify $t "$RDIR/$t-restore"
      rm -rf "$RDIR/$t-restore"
    done
    for t in $(order "$r"); do
      fresh_cache $t cold; env_for $t cold; rm -rf "$RDIR/$t-restore"
      measure $t restore-cold "$r" $t-r$r c_restore $t-r$r "$RDIR/$t-restore"
      rm -rf "$RDIR/$t-restore" "$WORK/$t/cold"
    done
    for t in cairn restic; do drop_repo $t-r$r; done
  fi
  if [[ " $STEPS " == *" pack "* ]]; then
    for p in $(rotate $((r - 1)) $PACK_SIZES); do
      fresh_cache cairn; env_for cairn; drop_repo cairn-p$p-r$r
      c_init cairn-p$p-r$r --pack-size "$p" >/dev/null || { echo "cairn init --pack-size $p failed" | tee -a "$WORK/failures"; continue; }
      measure cairn backup-pack$p "$r" cairn-p$p-r$r c_backup cairn-p$p-r$r "$DATA/usr"
      rm -rf "$RDIR/cairn-restore"
      measure cairn restore-pack$p "$r" cairn-p$p-r$r c_restore cairn-p$p-r$r "$RDIR/cairn-restore"
      rm -rf "$RDIR/cairn-restore"; drop_repo cairn-p$p-r$r
    done
  fi
  if [[ " $STEPS " == *" limit "* ]]; then
    done_sets=" "
    for e in $LIMIT_SETS; do
      kib=${e%%:*}; s=${e#*:}; n=$(echo "$s" | tr ',/' '+_'); paths=()
      for p in ${s//,/ }; do paths+=("$DATA/usr/$p"); done
      for lim in $kib 0; do
        if (( lim == 0 )); then [[ "$done_sets" == *" $n "* ]] && continue; done_sets+="$n "; fi
        pre=cairn-lim$lim-$n-r$r; fresh_cache cairn; env_for cairn; drop_repo $pre
        c_init $pre >/dev/null || continue
        if (( lim )); then measure cairn "limit$lim-$n" "$r" $pre c_backup_limit $pre "$lim" "${paths[@]}"
        else measure cairn "nolimit-$n" "$r" $pre c_backup $pre "${paths[@]}"; fi
        drop_repo $pre
      done
    done
  fi
  echo "round $r end $(date -u +%T) $(cat /proc/loadavg)" >> "$LOAD"
done
echo "end $(date -u +%T) $(cat /proc/loadavg)" >> "$LOAD"
cd "$WORK"; cat "$LOAD"
fi
cd "$WORK"


# Tables of medians.
python3 - "$RES" "$WORK/sizes.tsv" <<'EOF'
import sys, statistics as st, collections
rows = [l.rstrip('\n').split('\t') for l in open(sys.argv[1]) if l.strip()]
sizes = {k: int(v) for k, v in (l.split() for l in open(sys.argv[2]))}
GB = sizes['usr'] / 1e9
d = collections.defaultdict(list)
for tool, step, rnd, wall, rss, repo, cpu, srv, ops, *c in rows:
    own = None if c[0] == '-' else [int(x) for x in c]   # get head put list delete retries down up
    d[tool, step].append(dict(r=int(rnd), wall=float(wall), rss=int(rss), repo=int(repo), cpu=float(cpu),
                              srv=int(srv), ops=dict(o.split('=') for o in ops.split(',') if '=' in o), own=own))
def med(tool, step, f):
    v = [f(x) for x in d.get((tool, step), []) if f(x) is not None]
    return st.median(v) if v else None
fmt = lambda v, k=1, p=2: '-' if v is None else f"{v / k:.{p}f}"
q = lambda a, b: '-' if a is None or b is None or b == 0 else f"{a / b:.3f}"
own_total = lambda x: None if x['own'] is None else sum(x['own'][:5])

print(f"\nmain (usr = {sizes['usr'] / 1e9:.3f} GB, medians over rounds)")
print(f"{'step':14} {'n':>2} {'cairn s':>8} {'restic s':>8} {'ratio':>6} {'cairn cpu':>9} {'restic cpu':>10} {'ratio':>6} {'cairn MiB':>9} {'restic MiB':>10} {'cairn repo MB':>13} {'restic repo MB':>14}")
for s in ('backup', 'restore', 'restore-cold'):
    n = max(len(d.get(('cairn', s), [])), len(d.get(('restic', s), [])))
    if not n: continue
    cw, rw = med('cairn', s, lambda x: x['wall']), med('restic', s, lambda x: x['wall'])
    cc, rc = med('cairn', s, lambda x: x['cpu']), med('restic', s, lambda x: x['cpu'])
    cm, rm = med('cairn', s, lambda x: x['rss']), med('restic', s, lambda x: x['rss'])
    cs, rs = med('cairn', s, lambda x: x['repo']), med('restic', s, lambda x: x['repo'])
    print(f"{s:14} {n:>2} {fmt(cw):>8} {fmt(rw):>8} {q(cw, rw):>6} {fmt(cc):>9} {fmt(rc):>10} {q(cc, rc):>6} {fmt(cm, 1024, 0):>9} {fmt(rm, 1024, 0):>10} {fmt(cs, 1e6, 0):>13} {fmt(rs, 1e6, 0):>14}")
cw, rw = med('cairn', 'restore-cold', lambda x: x['wall']), med('restic', 'restore', lambda x: x['wall'])
print(f"cairn restore-cold / restic restore (warm): {q(cw, rw)}")

print("\nrequests per GB of source, median: req/GB = HTTP requests the server saw; own/GB = cairn's --request-stats (a multipart upload counts once)")
print(f"{'tool':7} {'step':14} {'req/GB':>8} {'own/GB':>8} {'MB up':>8} {'MB down':>8}  server ops (median per run)")
for (tool, step) in sorted(d):
    if step.startswith(('limit', 'nolimit')): continue
    g = sizes['usr'] / 1e9
    srv = med(tool, step, lambda x: x['srv']); own = med(tool, step, own_total)
    up = med(tool, step, lambda x: None if x['own'] is None else x['own'][7])
    down = med(tool, step, lambda x: None if x['own'] is None else x['own'][6])
    opn = sorted({k for x in d[tool, step] for k in x['ops']})
    ops = ' '.join(f"{k}={st.median([int(x['ops'].get(k, 0)) for x in d[tool, step]]):g}" for k in opn)
    print(f"{tool:7} {step:14} {fmt(srv, g, 1):>8} {fmt(own, g, 1):>8} {fmt(up, 1e6, 1):>8} {fmt(down, 1e6, 1):>8}  {ops}")

packs = sorted({int(s[len('backup-pack'):]) for (t, s) in d if s.startswith('backup-pack')})
if packs:
    print("\ncairn pack size (medians): backup and restore (warm cache) of usr")
    print(f"{'MiB':>4} {'n':>2} {'backup s':>8} {'restore s':>9} {'bk req/GB':>9} {'rs req/GB':>9} {'bk PUT':>6} {'rs GET':>6} {'repo MB':>8} {'bk MiB':>7} {'rs MiB':>7}")
    for p in packs:
        b, r = f'backup-pack{p}', f'restore-pack{p}'
        print(f"{p:>4} {len(d.get(('cairn', b), [])):>2} {fmt(med('cairn', b, lambda x: x['wall'])):>8} {fmt(med('cairn', r, lambda x: x['wall'])):>9} "
              f"{fmt(med('cairn', b, lambda x: x['srv']), GB, 1):>9} {fmt(med('cairn', r, lambda x: x['srv']), GB, 1):>9} "
              f"{fmt(med('cairn', b, lambda x: x['own'] and x['own'][2]), 1, 0):>6} {fmt(med('cairn', r, lambda x: x['own'] and x['own'][0]), 1, 0):>6} "
              f"{fmt(med('cairn', b, lambda x: x['repo']), 1e6, 0):>8} {fmt(med('cairn', b, lambda x: x['rss']), 1024, 0):>7} {fmt(med('cairn', r, lambda x: x['rss']), 1024, 0):>7}")

lims = sorted({s for (t, s) in d if s.startswith('limit')}, key=lambda s: (-int(s[5:].split('-')[0]), s))
if lims:
    print("\ncairn --limit-upload: achieved = bytes up / wall (medians; per-round rates in brackets)")
    print("(excess = wall - bytes up / limit: the time not spent uploading at the limit; the same few tenths of a")
    print(" second whatever the size means the limit holds while uploading and start-up and the end cost the rest)")
    print(f"{'limit KiB/s':>11} {'subset':22} {'src MB':>7} {'up MB':>7} {'wall s':>7} {'MiB/s':>6} {'vs limit':>8} {'excess s':>8}  {'unlimited s':>11} {'MiB/s':>6}  rounds (MiB/s)")
    for s in lims:
        kib = int(s[5:].split('-')[0]); n = s.split('-', 1)[1]
        rates = [x['own'][7] / x['wall'] / 2**20 for x in sorted(d['cairn', s], key=lambda x: x['r'])]
        w = med('cairn', s, lambda x: x['wall']); up = med('cairn', s, lambda x: x['own'][7])
        rate = st.median(rates); lim = kib / 1024
        ex = med('cairn', s, lambda x: x['wall'] - x['own'][7] / (kib * 1024))
        nw = med('cairn', 'nolimit-' + n, lambda x: x['wall']); nr = med('cairn', 'nolimit-' + n, lambda x: x['own'][7] / x['wall'] / 2**20)
        print(f"{kib:>11} {n:22} {sizes.get(n, 0) / 1e6:>7.0f} {up / 1e6:>7.1f} {w:>7.2f} {rate:>6.2f} {100 * (rate / lim - 1):>+7.1f}% {ex:>8.2f}  {fmt(nw):>11} {fmt(nr):>6}  [{' '.join(f'{x:.2f}' for x in rates)}]")

print("\nall rounds (wall s): " + "; ".join(f"{t} {s}: " + " ".join(f"{x['wall']:.2f}" for x in sorted(v, key=lambda x: x['r'])) for (t, s), v in sorted(d.items())))
EOF
[ -s "$WORK/failures" ] && { echo "FAILURES:"; cat "$WORK/failures"; }
exit 0
