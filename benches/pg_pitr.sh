#!/usr/bin/env bash
# PostgreSQL point-in-time recovery, cairn against pgBackRest, on one cluster in one run (issue 22).
#
# Usage (as root: it installs pgbackrest if missing and runs PostgreSQL as `postgres`):
#   benches/pg_pitr.sh [--quick] [--keep]
#   --quick  one round instead of REPEATS;  --keep  leave the work folder (printed) in place
# Environment: CAIRN (binary; default $CARGO_TARGET_DIR/release/cairn, else target/release/cairn,
#   else `cairn`), PGBIN (/usr/lib/postgresql/15/bin), REPEATS (3), SCALE (pgbench scale, 40),
#   PILE (WAL segments to pile up for the push test, 100), TX (pgbench transactions per client
#   between the two base backups, 4 clients: 5000), FETCH (segments fetched one by one, 64),
#   TMPDIR (where the work folder goes; it needs ~4 GB at scale 40).
#
# Both tools encrypted; pgBackRest 2.45 as gz (its default, process-max 1) and lz4 (process-max
# 2), cairn with its defaults (zstd 3, threads = cores). Steps, each timed round with fresh
# repositories:
# 1 push   archive_command failing while pgbench -i plus pgbench -T runs pile up PILE segments
#          as .ready; then the server is stopped and PostgreSQL's archiver is replayed against a
#          copy of that pg_wal (hard links) per tool and round: for each .ready file, oldest
#          first, one call of the tool's push command in the data directory with pg_wal/NAME,
#          and on success the .ready renamed to .done. cairn (which batches the other ready
#          files and answers later calls from its markers), pgBackRest archive-push sync, and
#          async (archive-async=y, spool-path).
# 2 full   base backup of the running cluster, each tool into a fresh repository (its own
#          archive_command active while it runs: the server's archive_command is a script that
#          pushes to the repositories named in WORK/archive.mode) — wall time, repository bytes
# 3 second the same after pgbench -c 4 -t TX (all repositories archiving): cairn `pg backup`
#          again, pgBackRest incr (its default once a full exists) — wall time, bytes added
# 4 restore of the latest backup into an empty folder (files only; recovery is not run)
# 5 fetch  restore_command replayed as PostgreSQL calls it: FETCH archived segments one by one,
#          each `wal-fetch NAME pg_wal/RECOVERYXLOG` / `archive-get` from a data directory of the
#          cluster (so cairn's prefetch spool and pgBackRest's async queue work), from the last
#          push round's repositories — MB/s (1 MB = 10^6 bytes)
# Output: WORK/results.tsv (tool step round wall_s cpu_s value) and a table of medians
# (cpu = user + sys of the timed command and the children it waited for; pgBackRest's async
# workers are detached and not counted).
set -uo pipefail
QUICK=0; KEEP=0
for a in "$@"; do case $a in --quick) QUICK=1;; --keep) KEEP=1;; *) echo "unknown argument $a"; exit 2;; esac; done
HERE=$(cd "$(dirname "$0")" && pwd)
BUILT=${CARGO_TARGET_DIR:-$HERE/../target}/release/cairn
CAIRN=${CAIRN:-$( [ -x "$BUILT" ] && echo "$BUILT" || command -v cairn)}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
REPEATS=${REPEATS:-3}; (( QUICK )) && REPEATS=1
SCALE=${SCALE:-40}; PILE=${PILE:-100}; TX=${TX:-5000}; FETCH=${FETCH:-64}
[ "$(id -u)" = 0 ] || { echo "run as root (installs pgbackrest, runs PostgreSQL as postgres)"; exit 1; }
[ -x "$CAIRN" ] || { echo "no cairn binary (set CAIRN)"; exit 1; }
[ -x "$PGBIN/initdb" ] || { echo "no PostgreSQL in $PGBIN (set PGBIN)"; exit 1; }
command -v pgbackrest >/dev/null || apt-get install -y pgbackrest >/dev/null || exit 1
id postgres >/dev/null 2>&1 || { echo "no postgres user"; exit 1; }

W=$(mktemp -d "${TMPDIR:-/tmp}/pg_pitr.XXXXXX"); chmod 755 "$W"
PORT=$((54000 + RANDOM % 1000))
as_pg() { runuser -u postgres -- env PATH="$PGBIN:$PATH" PGHOST="$W/sock" PGPORT=$PORT PGUSER=postgres PGDATABASE=postgres "$@"; }
cleanup() {
  [ -f "$W/data/postmaster.pid" ] && as_pg pg_ctl -D "$W/data" -m immediate stop >/dev/null 2>&1
  if (( KEEP )); then echo "work folder kept: $W"; else rm -rf "${W:?}"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$W"/{bin,sock,repo,cache,logs,spool,restore}
install -m 755 "$CAIRN" "$W/bin/cairn"
echo bench-password > "$W/pass"; chmod 600 "$W/pass"
RES=$W/results.tsv; : > "$RES"
chown -R postgres: "$W"
log() { echo "# $(date +%T) $*"; }

# --- configuration: cairn command line, pgBackRest configuration files ---------------------------
C=("$W/bin/cairn" -q --password-file "$W/pass" --cache-dir "$W/cache/cairn")
# pgbr_conf NAME PG1PATH COMPRESS PROCESSES ASYNC
pgbr_conf() {
  cat > "$W/pgbr-$1.conf" <<EOF
[global]
repo1-path=$W/repo/$1
repo1-cipher-type=aes-256-cbc
repo1-cipher-pass=bench-cipher-pass
compress-type=$3
process-max=$4
archive-async=$5
spool-path=$W/spool/$1
lock-path=$W/spool/$1-lock
log-path=$W/logs
log-level-console=warn
log-level-file=off
start-fast=y
[db]
pg1-path=$2
pg1-port=$PORT
pg1-socket-path=$W/sock
pg1-user=postgres
EOF
}
pgbr_conf gz "$W/data" gz 1 n; pgbr_conf lz4 "$W/data" lz4 2 n
pgbr_conf push-gz "$W/push" gz 1 n; pgbr_conf push-lz4 "$W/push" lz4 2 n
pgbr_conf push-gz-async "$W/push" gz 1 y; pgbr_conf push-lz4-async "$W/push" lz4 2 y
# The server's archive_command: pushes to the repositories named in archive.mode ("hold" waits).
cat > "$W/archive-to-cairn-or-pgbackrest.sh" <<EOF
#!/bin/bash
while [ "\$(cat $W/archive.mode)" = hold ]; do sleep 0.1; done
for t in \$(cat $W/archive.mode); do
  case \$t in
    fail) exit 1;;
    cairn) ${C[*]} -r $W/repo/cairn pg wal-push "\$1" || exit 1;;
    gz|lz4) pgbackrest --config=$W/pgbr-\$t.conf --stanza=db archive-push "\$1" || exit 1;;
  esac
done
EOF
chmod 755 "$W/archive-to-cairn-or-pgbackrest.sh"; echo fail > "$W/archive.mode"
chown -R postgres: "$W"
mode() { echo "$*" > "$W/archive.mode"; }
psql_() { as_pg psql -qAtX -c "$1"; }
# drain: wait until the archiver has nothing left to do (at most 300 s).
drain() {
  psql_ "SELECT pg_switch_wal()" >/dev/null
  for _ in $(seq 3000); do
    ls "$W/data/pg_wal/archive_status" | grep -q '\.ready$' || return 0; sleep 0.1
  done
  log "archiver did not drain: $(psql_ 'SELECT * FROM pg_stat_archiver')"; return 1
}
# new_repo TOOL: a fresh, empty repository (cairn init; pgBackRest stanza-create).
new_repo() {
  rm -rf "${W:?}/repo/$1" "$W/cache/$1" "$W/spool/$1"
  case $1 in
    cairn) as_pg "${C[@]}" -r "$W/repo/cairn" init >/dev/null;;
    *) as_pg pgbackrest --config="$W/pgbr-$1.conf" --stanza=db stanza-create --no-online;;
  esac
}
# timed TOOL STEP ROUND VALUE_CMD -- CMD...: run CMD as postgres; append wall, cpu and the output
# of VALUE_CMD (evaluated after CMD; "" for none) to results.tsv.
timed() {
  local tool=$1 step=$2 round=$3 value=$4; shift 5
  local tf=$W/time.$$ lf=$W/logs/$tool.$step.$round
  sync
  if /usr/bin/time -f "%e %U %S" -o "$tf" runuser -u postgres -- env PATH="$PGBIN:$PATH" \
       PGHOST="$W/sock" PGPORT=$PORT PGUSER=postgres PGDATABASE=postgres "$@" >"$lf" 2>&1; then
    local wall user sys v=""; read -r wall user sys < <(tail -1 "$tf")
    [ -n "$value" ] && v=$(eval "$value")
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$step" "$round" "$wall" "$(echo "$user + $sys" | bc)" "$v" | tee -a "$RES"
  else
    echo "$tool $step $round FAILED: $(tail -3 "$lf")" | tee -a "$W/failures"
  fi
}
size() { du -sb "$W/repo/$1" | cut -f1; }
# settle TOOL: wait until pgBackRest's detached async worker of TOOL has let go of its lock.
settle() { for l in "$W/spool/$1-lock"/*.lock; do [ -e "$l" ] && timeout 120 flock "$l" true; done; }
order() { local r=$1; shift; local a=("$@") n=$#; for i in $(seq 0 $((n - 1))); do echo "${a[$(((i + r) % n))]}"; done; }

{
echo "# $(date -u +%FT%TZ) $(hostname): nproc $(nproc), $(free -m | awk '/^Mem:/ {print $2 " MiB RAM, " $7 " MiB available"}'), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# cairn $("$CAIRN" version 2>/dev/null | head -1) ($(git -C "$HERE" rev-parse --short HEAD 2>/dev/null)); $(pgbackrest version); $("$PGBIN/postgres" --version)"
echo "# scale $SCALE, pile $PILE segments, $((4 * TX)) transactions between base backups, fetch $FETCH segments, $REPEATS rounds"
} | tee "$W/header.txt"

# --- the cluster ----------------------------------------------------------------------------------
log "initdb, pgbench -i -s $SCALE (archive_command failing)"
as_pg initdb -D "$W/data" -U postgres -A trust --no-sync >"$W/logs/initdb" 2>&1 || { cat "$W/logs/initdb"; exit 1; }
cat >> "$W/data/postgresql.conf" <<EOF
port = $PORT
listen_addresses = ''
unix_socket_directories = '$W/sock'
archive_mode = on
archive_command = '$W/archive-to-cairn-or-pgbackrest.sh %p'
shared_buffers = 256MB
synchronous_commit = off
logging_collector = off
EOF
start() { as_pg pg_ctl -D "$W/data" -l "$W/logs/server" -w start >/dev/null || { tail "$W/logs/server"; exit 1; }; }
start
as_pg pgbench -i -q -s "$SCALE" >"$W/logs/pgbench-init" 2>&1 || { cat "$W/logs/pgbench-init"; exit 1; }
ready() { ls "$W/data/pg_wal/archive_status" | grep -c '\.ready$'; }
for i in $(seq 20); do  # at least one pgbench -T run: its WAL (full-page images) is less regular
  (( i > 1 && $(ready) >= PILE )) && break
  as_pg pgbench -c 4 -j 2 -T 15 >>"$W/logs/pgbench-pile" 2>&1
  psql_ "CHECKPOINT" >/dev/null  # full-page images again after each checkpoint
done
as_pg pg_ctl -D "$W/data" -m fast -w stop >/dev/null
# The pile: every ready segment before the shutdown checkpoint's redo segment (which the server
# needs to start again) moves out of the cluster into WORK/pile, with its .ready file.
redo=$(as_pg pg_controldata -D "$W/data" | sed -n "s/^Latest checkpoint's REDO WAL file: *//p")
mkdir -p "$W/pile/archive_status"
for r in $(ls "$W/data/pg_wal/archive_status" | grep '\.ready$' | sort); do
  n=${r%.ready}; [[ $n < $redo ]] || continue
  mv "$W/data/pg_wal/$n" "$W/pile/" && mv "$W/data/pg_wal/archive_status/$r" "$W/pile/archive_status/"
done
chown -R postgres: "$W/pile"
NPILE=$(ls "$W/pile/archive_status" | wc -l)
log "$NPILE segments piled up ($(du -sm "$W/pile" | cut -f1) MB)"

# --- 1. push: PostgreSQL's archiver replayed, one call per ready file, serially -----------------
# shellcheck disable=SC2016
REPLAY='cd "$1" && shift && for r in $(ls pg_wal/archive_status | grep "\.ready$" | sort); do
  n=${r%.ready}; "$@" "pg_wal/$n" || { echo "push of $n failed"; exit 1; }
  mv "pg_wal/archive_status/$r" "pg_wal/archive_status/$n.done"; done'
# A data directory for a push or fetch round: pg_control and PG_VERSION of the cluster, and
# pg_wal as hard links to the pile (push) or empty (fetch).
fake_pgdata() {
  rm -rf "${1:?}"; mkdir -p "$1/global"; cp "$W/data/global/pg_control" "$1/global/"; cp "$W/data/PG_VERSION" "$1/"
  if [ "$2" = pile ]; then cp -al "$W/pile" "$1/pg_wal"; else mkdir -p "$1/pg_wal/archive_status"; fi
  chown -R postgres: "$1"; chmod 700 "$1"
}
PUSH_TOOLS="cairn push-gz push-lz4 push-gz-async push-lz4-async"
for r in $(seq 1 "$REPEATS"); do
  for t in $(order "$r" $PUSH_TOOLS); do
    fake_pgdata "$W/push" pile; new_repo "$t"
    case $t in
      cairn) timed cairn push "$r" "echo $NPILE" -- bash -c "$REPLAY" _ "$W/push" "${C[@]}" -r "$W/repo/cairn" pg wal-push;;
      *) timed "$t" push "$r" "echo $NPILE" -- bash -c "$REPLAY" _ "$W/push" pgbackrest --config="$W/pgbr-$t.conf" --stanza=db archive-push;;
    esac
    settle "$t"
  done
done
# what arrived (last round): every piled segment, in every repository
as_pg "${C[@]}" -r "$W/repo/cairn" pg list 2>&1 | grep segments | tee "$W/logs/cairn.push.list"
for t in push-gz push-lz4 push-gz-async push-lz4-async; do
  echo "$t: $(find "$W/repo/$t/archive" -name '0000*' | wc -l) segments archived, $(size "$t") bytes"
done | tee "$W/logs/pgbr.push.list"
echo "cairn: $(size cairn) bytes" | tee -a "$W/logs/pgbr.push.list"
rm -rf "$W/push"

# --- 5. fetch: restore_command replayed, one call per segment, from the push repositories --------
FETCH_TOOLS="cairn push-gz push-lz4 push-gz-async push-lz4-async"
names=$(ls "$W/pile" | grep -v archive_status | sort | head -n "$FETCH")
nfetch=$(echo "$names" | wc -l)
# shellcheck disable=SC2016
FETCHLOOP='cd "$1" && shift && for n in '"$(echo $names)"'; do
  "$@" "$n" pg_wal/RECOVERYXLOG || { echo "fetch of $n failed"; exit 1; }
  [ "$(stat -c %s pg_wal/RECOVERYXLOG)" = 16777216 ] || { echo "$n: wrong size"; exit 1; }
  rm pg_wal/RECOVERYXLOG; done'
for r in $(seq 1 "$REPEATS"); do
  for t in $(order "$r" $FETCH_TOOLS); do
    fake_pgdata "$W/push" empty; rm -rf "$W/spool/$t"
    case $t in
      cairn) timed cairn fetch "$r" "echo $((nfetch * 16777216))" -- bash -c "$FETCHLOOP" _ "$W/push" "${C[@]}" -r "$W/repo/cairn" pg wal-fetch;;
      *) timed "$t" fetch "$r" "echo $((nfetch * 16777216))" -- bash -c "$FETCHLOOP" _ "$W/push" pgbackrest --config="$W/pgbr-$t.conf" --stanza=db archive-get;;
    esac
    settle "$t"
  done
done
(( KEEP )) && mv "$W/repo/cairn" "$W/repo/push-cairn"
rm -rf "$W/push" "$W/cache/cairn"; (( KEEP )) || rm -rf "$W/pile" "$W"/repo/push-* "$W/repo/cairn"

# --- 2-4. base backups and restore, on the running cluster ---------------------------------------
mode hold; start
BASE_TOOLS="cairn gz lz4"
backup_cmd() { case $1 in cairn) echo "${C[*]} -r $W/repo/cairn pg backup --pgdata $W/data";;
                           *) echo "pgbackrest --config=$W/pgbr-$1.conf --stanza=db backup $2";; esac; }
for r in $(seq 1 "$REPEATS"); do
  mode hold
  for t in $BASE_TOOLS; do new_repo "$t"; done
  mode cairn gz lz4; drain
  for t in $(order "$r" $BASE_TOOLS); do
    mode "$t"; drain; before=$(size "$t")
    timed "$t" full "$r" "echo \$((\$(size $t) - $before))" -- $(backup_cmd "$t" --type=full)
  done
  mode cairn gz lz4
  log "round $r: pgbench -c 4 -t $TX"
  as_pg pgbench -c 4 -j 2 -t "$TX" >>"$W/logs/pgbench-rounds" 2>&1
  drain
  for t in $(order $((r + 1)) $BASE_TOOLS); do
    mode "$t"; drain; before=$(size "$t")
    timed "$t" second "$r" "echo \$((\$(size $t) - $before))" -- $(backup_cmd "$t" --type=incr)
  done
  mode cairn gz lz4; drain
  for t in $(order $((r + 2)) $BASE_TOOLS); do
    d=$W/restore/$t; rm -rf "$d"; install -d -m 700 -o postgres -g postgres "$d"
    case $t in
      cairn) timed cairn restore "$r" "du -sb $d | cut -f1" -- "${C[@]}" -r "$W/repo/cairn" pg restore --pgdata "$d" --latest;;
      *) timed "$t" restore "$r" "du -sb $d | cut -f1" -- pgbackrest --config="$W/pgbr-$t.conf" --stanza=db --pg1-path="$d" restore;;
    esac
    rm -rf "$d"
  done
done
mode cairn gz lz4; as_pg pg_ctl -D "$W/data" -m fast -w stop >/dev/null

# --- the table ------------------------------------------------------------------------------------
python3 - "$RES" <<'EOF'
import sys, statistics as st, collections
d = collections.defaultdict(list)
for l in open(sys.argv[1]):
    if not l.strip(): continue
    tool, step, rnd, wall, cpu, v = l.rstrip('\n').split('\t')
    d[step, tool.replace('push-', '')].append((float(wall), float(cpu), float(v) if v else None))
tools = ['cairn', 'gz', 'lz4', 'gz-async', 'lz4-async']
med = lambda xs: st.median(xs) if xs else None
def cell(step, tool, f):
    xs = d.get((step, tool))
    if not xs: return '-'
    return f(xs)
rows = [
  ('archive-push segments/s', 'push', lambda xs: f"{med([v / w for w, c, v in xs]):.1f}"),
  ('archive-push cpu s/segment', 'push', lambda xs: f"{med([c / v for w, c, v in xs]):.3f}"),
  ('full backup s', 'full', lambda xs: f"{med([w for w, c, v in xs]):.2f}"),
  ('full backup cpu s', 'full', lambda xs: f"{med([c for w, c, v in xs]):.2f}"),
  ('full backup MB', 'full', lambda xs: f"{med([v for w, c, v in xs]) / 1e6:.1f}"),
  ('second backup s', 'second', lambda xs: f"{med([w for w, c, v in xs]):.2f}"),
  ('second backup MB added', 'second', lambda xs: f"{med([v for w, c, v in xs]) / 1e6:.1f}"),
  ('restore s', 'restore', lambda xs: f"{med([w for w, c, v in xs]):.2f}"),
  ('wal-fetch MB/s', 'fetch', lambda xs: f"{med([v / w / 1e6 for w, c, v in xs]):.0f}"),
  ('wal-fetch cpu s/segment', 'fetch', lambda xs: f"{med([c / (v / 16777216) for w, c, v in xs]):.3f}"),
]
print(f"| {'median of rounds':28} | " + " | ".join(f"{t:>9}" for t in ['cairn', 'pgbr gz', 'pgbr lz4', 'gz async', 'lz4 async']) + " |")
print("|" + "---|" * 6)
for name, step, f in rows:
    print(f"| {name:28} | " + " | ".join(f"{cell(step, t, f):>9}" for t in tools) + " |")
print("all rounds (wall s): " + "; ".join(f"{t} {s}: " + " ".join(f"{x[0]:.2f}" for x in v) for (s, t), v in sorted(d.items())))
EOF
[ -s "$W/failures" ] && { echo "FAILURES:"; cat "$W/failures"; }
exit 0
