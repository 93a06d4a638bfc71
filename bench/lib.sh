# bench/lib.sh: helpers shared by the bench scripts (sourced, not run).
# The caller sets WORK (its temp dir) and PG_BIN, and names itself in
# BENCH_NAME for messages.

# bench_free_port prints a loopback port nothing listens on.
bench_free_port() {
  local p
  for _ in $(seq 100); do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return
    fi
  done
  echo "${BENCH_NAME:-bench}: no free port found" >&2
  exit 1
}

# bench_pg_user prepares WORK for a PostgreSQL server: as root, WORK is
# given to the postgres user (initdb refuses root) and AS_PG runs commands
# as that user; otherwise AS_PG is empty.
bench_pg_user() {
  AS_PG=()
  if [[ "$(id -u)" -eq 0 ]]; then
    chown postgres: "$WORK"
    AS_PG=(runuser -u postgres --)
  fi
}

# bench_pg_start PORT [SERVER OPTIONS...]: initdb in $WORK/pg and start it
# on 127.0.0.1:PORT (socket in $WORK), extra `-c name=value` options
# appended; sets PG_STARTED so bench_pg_stop stops it.
bench_pg_start() {
  local port="$1"
  shift
  echo "${BENCH_NAME:-bench}: initdb and start PostgreSQL on 127.0.0.1:$port" >&2
  "${AS_PG[@]}" "$PG_BIN/initdb" -D "$WORK/pg" -A trust -U postgres -E UTF8 \
    --locale=C >"$WORK/initdb.log" 2>&1
  "${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pg.log" -w -t 60 \
    -o "-p $port -k $WORK -c listen_addresses=127.0.0.1 $*" start >/dev/null
  PG_STARTED=1
}

# bench_pg_stop stops the server bench_pg_start started, if any (for the
# callers' exit traps; never fails).
bench_pg_stop() {
  if [[ -n "${PG_STARTED:-}" ]]; then
    "${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$WORK/pg" -m fast -w stop >/dev/null 2>&1 || true
  fi
}
