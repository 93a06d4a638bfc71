#!/usr/bin/env bash
# bench/footprint.sh: bytes per enrollment and per event that ipsrtd's
# database grows by, on SQLite and on PostgreSQL (see bench/README.md).
# For each store it starts a throw-away ipsrtd on a free loopback port,
# measures the empty database, makes CREATES enrollments with
# ipsrt_footprint, measures, submits EVENTS events (half SRM-5 diary days,
# half sessions held), measures again, and prints a markdown report with the
# growth per row beside the bytes the rows carry and the per-table split.
#
# SQLite is measured with ipsrtd stopped (its clean close checkpoints the
# WAL into the database): page_count * page_size, and dbstat per table and
# index. PostgreSQL is measured live: pg_total_relation_size per table (heap,
# TOAST and indexes) after a CHECKPOINT, with autovacuum left on as in
# production.
#
# Environment (all optional):
#   BUILD_DIR     build tree with the binaries (default: build/default)
#   CREATES       enrollments to create (default 20000)
#   EVENTS        events to submit (default 20000)
#   THREADS       concurrent callers of ipsrt_footprint (default 8)
#   STORES        "sqlite postgres" (default), or one of them
#   PG_BIN        PostgreSQL binaries (default /usr/lib/postgresql/15/bin)
#   BENCH_TMPDIR  parent of the temp dir (default: $TMPDIR or /tmp)
#   WORKFLOWS_DIR workflow templates the servers load (default: workflows/)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

BUILD_DIR="${BUILD_DIR:-build/default}"
CREATES="${CREATES:-20000}"
EVENTS="${EVENTS:-20000}"
THREADS="${THREADS:-8}"
STORES="${STORES:-sqlite postgres}"
PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
WORKFLOWS_DIR="${WORKFLOWS_DIR:-$ROOT/workflows}"

IPSRTD="$BUILD_DIR/engine/ipsrtd"
TOOL="$BUILD_DIR/bench/ipsrt_footprint"
BENCH_NAME=footprint.sh
source "$ROOT/bench/lib.sh"
bench_need "$IPSRTD" "$TOOL"
if [[ " $STORES " == *" sqlite "* ]]; then bench_need "$(command -v sqlite3 || echo sqlite3)"; fi
if [[ " $STORES " == *" postgres "* ]]; then bench_need "$PG_BIN/initdb" "$PG_BIN/pg_ctl" "$PG_BIN/psql"; fi

bench_begin ipsrt-bench-footprint
bench_pg_user

# start NAME: ipsrtd with $WORK/NAME/ipsrtd.yaml; sets ADDR once it serves.
start() {
  bench_server_start "$WORK/$1/ipsrtd.yaml" "$WORK/$1/ipsrtd.log"
  ADDR="$SERVER_ADDR"
}

stop() { bench_server_stop "$SERVER_PID" "$WORK/$1/ipsrtd.log"; }

write_config() { bench_server_config "$WORK/$1/ipsrtd.yaml" "$2"; }

# Sizes: "object bytes" lines (tables, with their indexes under
# "table.index"), and a "total bytes" line.
sqlite_sizes() {
  local db="$WORK/sqlite/db/ipsrt.db"
  sqlite3 -readonly "$db" \
    "SELECT 'total', (SELECT page_count FROM pragma_page_count) * (SELECT page_size FROM pragma_page_size);
     SELECT CASE WHEN m.type = 'index' THEN m.tbl_name || '.' || d.name ELSE d.name END, SUM(d.pgsize)
       FROM dbstat d JOIN sqlite_master m ON m.name = d.name GROUP BY d.name;" |
    tr '|' ' '
}
pg_sizes() {
  psql_q "SELECT 'total', SUM(pg_total_relation_size(c.oid)) FROM pg_class c
            WHERE c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace;
          SELECT c.relname, pg_relation_size(c.oid) + COALESCE(pg_total_relation_size(NULLIF(c.reltoastrelid, 0)), 0)
            FROM pg_class c WHERE c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace;
          SELECT t.relname || '.' || i.relname, pg_relation_size(i.oid)
            FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
            JOIN pg_class t ON t.oid = x.indrelid
            WHERE t.relnamespace = 'public'::regnamespace;" | tr '|' ' '
}
psql_q() {
  "$PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 \
    "host=127.0.0.1 port=$PG_PORT user=postgres dbname=footprint" -c "$1"
}


# measure STORE PHASE: writes $WORK/STORE.PHASE with the sizes.
measure() {
  if [[ "$1" == sqlite ]]; then
    stop sqlite
    sqlite_sizes >"$WORK/$1.$2"
    start sqlite
  else
    psql_q "CHECKPOINT" >/dev/null
    pg_sizes >"$WORK/$1.$2"
  fi
}

# report STORE: the markdown section of one store.
report() {
  local s="$1" created="$2" evented="$3"
  local c_ok e_ok c_bytes diary diary_b session session_b
  c_ok="$(bench_json_field "$created" ok)"
  e_ok="$(bench_json_field "$evented" ok)"
  c_bytes="$(bench_json_field "$created" stored_bytes)"
  diary="$(bench_json_field "$evented" diary)"
  diary_b="$(bench_json_field "$evented" diary_bytes)"
  session="$(bench_json_field "$evented" session)"
  session_b="$(bench_json_field "$evented" session_bytes)"
  awk -v store="$s" -v c="$c_ok" -v e="$e_ok" -v cb="$c_bytes" \
    -v d="$diary" -v db="$diary_b" -v n="$session" -v nb="$session_b" '
    FILENAME ~ /\.empty$/ { a[$1] = $2; names[$1] = 1 }
    FILENAME ~ /\.created$/ { b[$1] = $2; names[$1] = 1 }
    FILENAME ~ /\.events$/ { x[$1] = $2; names[$1] = 1 }
    END {
      per_c = (b["total"] - a["total"]) / c
      per_e = (x["total"] - b["total"]) / e
      payload = (db + nb) / e
      target = 2 * payload + 100
      printf "### %s\n\n", store
      printf "| measure | bytes |\n|---|---:|\n"
      printf "| database per new enrollment (%d creates) | %.0f |\n", c, per_c
      printf "| created enrollment as answered (ipsrt.v1.Enrollment) | %.0f |\n", cb / c
      printf "| database per event (%d events) | %.0f |\n", e, per_e
      printf "| recorded event payload, mean (diary %.0f, session %.0f) | %.0f |\n", db / d, nb / n, payload
      printf "\n| target | value | limit | met |\n|---|---:|---:|---|\n"
      printf "| bytes per new enrollment | %.0f | 3072 | %s |\n", per_c, per_c <= 3072 ? "yes" : "no"
      printf "| bytes per event | %.0f | %.0f (2 x payload + 100) | %s |\n", per_e, target, per_e <= target ? "yes" : "no"
      printf "\n| table / index | per enrollment | per event | size after |\n|---|---:|---:|---:|\n"
      n_names = 0
      for (k in names) if (k != "total") sorted[++n_names] = k
      for (i = 2; i <= n_names; i++) {
        v = sorted[i]; j = i - 1
        while (j > 0 && sorted[j] > v) { sorted[j + 1] = sorted[j]; j-- }
        sorted[j + 1] = v
      }
      for (i = 1; i <= n_names; i++) {
        k = sorted[i]
        printf "| %s | %.0f | %.0f | %d |\n", k, (b[k] - a[k]) / c, (x[k] - b[k]) / e, x[k]
      }
      printf "\n"
    }' "$WORK/$s.empty" "$WORK/$s.created" "$WORK/$s.events"
}

run_store() {
  local s="$1" created evented
  start "$s"
  measure "$s" empty
  echo "footprint.sh: $s: $CREATES creates" >&2
  created="$("$TOOL" --server="$ADDR" --phase=create --count="$CREATES" \
    --threads="$THREADS" --names_file="$WORK/$s.names")"
  measure "$s" created
  echo "footprint.sh: $s: $EVENTS events" >&2
  evented="$("$TOOL" --server="$ADDR" --phase=event --count="$EVENTS" \
    --threads="$THREADS" --names_file="$WORK/$s.names")"
  measure "$s" events
  stop "$s"
  REPORTS+=("$(report "$s" "$created" "$evented")")
}

REPORTS=()
for s in $STORES; do
  case "$s" in
    sqlite)
      write_config sqlite "$(printf '  kind: sqlite\n  sqlite:\n    path: db/ipsrt.db\n    synchronous: full\n')"
      run_store sqlite
      ;;
    postgres)
      PG_PORT="$(bench_free_port)"
      bench_pg_start "$PG_PORT"
      "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 \
        "host=127.0.0.1 port=$PG_PORT user=postgres dbname=postgres" \
        -c "CREATE DATABASE footprint" >/dev/null
      write_config postgres "$(printf '  kind: postgres\n  postgres:\n    conninfo: "host=127.0.0.1 port=%s user=postgres dbname=footprint"\n' "$PG_PORT")"
      run_store postgres
      ;;
    *) echo "footprint.sh: unknown store $s" >&2; exit 2 ;;
  esac
done

COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ -n "$(git status --porcelain 2>/dev/null)" ]]; then
  COMMIT="$COMMIT (+uncommitted changes in the working tree)"
fi
echo
echo "## ipsrtd storage footprint"
echo
echo "- date (end of run): $(date -u '+%Y-%m-%d %H:%M:%S UTC'); commit: $COMMIT"
echo "- $CREATES CreateEnrollment (ipsrt-standard), then $EVENTS SubmitEvent" \
  "(every second one an SRM-5 diary day, the others a session held), $THREADS callers"
echo "- growth = database size after minus before, divided by the calls;" \
  "payload = the recorded ipsrt.v1.Event as serialized (the events.payload column keeps it deflated, from schema 6 without its own hash; a session held weighs more when it plans the next session, which depends on the time of the run, so compare runs made together)"
echo
for r in "${REPORTS[@]}"; do echo "$r"; echo; done
