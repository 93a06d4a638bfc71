#!/usr/bin/env bash
# The Debian package end to end: CPack builds the .deb from the build tree
# (as `make package` does); it is unpacked into a clean root (dpkg -x) and
# its postinst runs there in dpkg's chrootless mode (DPKG_ROOT), creating
# the system user and the state directory; the installed ipsrtd then runs
# as that user with the installed config and answers health and /metrics;
# prerm, file removal and postrm purge follow. `systemd-analyze verify`
# checks the unit where systemd-analyze exists.
#
# Usage: package_test.sh BUILD_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
work=$(mktemp -d /tmp/ipsrt-package.XXXXXX)
chmod 755 "$work"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill -9 "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# 1. The package.
(cd "$work" && cpack --config "$build/CPackConfig.cmake" -B "$work/out" \
   >"$work/cpack.log" 2>&1) || { cat "$work/cpack.log"; fail "cpack"; }
deb=$(ls "$work"/out/ipsrtd_*.deb)
echo "built $(basename "$deb") ($(stat -c %s "$deb") bytes)"
dpkg-deb -c "$deb" | awk '{ print $6 }' >"$work/contents"
for f in ./usr/bin/ipsrtd ./usr/bin/ipsrt ./usr/bin/ipsrt-plugin-runner \
         ./usr/lib/libipsrt_proto.so.1 \
         ./usr/lib/ipsrt/plugins/libipsrt_core_instruments.so \
         ./usr/lib/ipsrt/plugins/libipsrt_fhir_r4.so \
         ./usr/include/ipsrt_plugin.h \
         ./usr/lib/cmake/ipsrt_plugin_sdk/ipsrt_plugin_sdkConfig.cmake \
         ./usr/lib/systemd/system/ipsrtd.service ./etc/ipsrtd/ipsrtd.yaml \
         ./usr/share/ipsrtd/workflows/ipsrt-standard.yaml \
         ./usr/share/ipsrtd/monitoring/grafana-dashboard.json \
         ./usr/share/ipsrtd/monitoring/prometheus-alerts.yaml \
         ./usr/share/doc/ipsrtd/operations.md; do
  grep -qx "$f" "$work/contents" || fail "package lacks $f"
done
depends=$(dpkg-deb -f "$deb" Depends)
for lib in libgrpc++ libprotobuf libprometheus-cpp-pull libsqlite3 libpq5 \
           libyaml-cpp passwd; do
  case "$depends" in *"$lib"*) ;; *) fail "Depends lacks $lib: $depends" ;; esac
done
dpkg-deb -e "$deb" "$work/control"
grep -qx /etc/ipsrtd/ipsrtd.yaml "$work/control/conffiles" ||
  fail "ipsrtd.yaml is not a conffile"

# 2. A clean root: only the account files a base system has.
root="$work/root"
mkdir -p "$root/etc"
printf 'root:x:0:0:root:/root:/bin/bash\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"
printf 'root:*:19000:0:99999:7:::\n' >"$root/etc/shadow"
printf 'root:*::\n' >"$root/etc/gshadow"
chmod 640 "$root/etc/shadow" "$root/etc/gshadow"
dpkg -x "$deb" "$root"
[ ! -e "$root/var/lib/ipsrtd" ] || fail "/var/lib/ipsrtd is shipped, not made"
DPKG_ROOT="$root" sh "$work/control/postinst" configure ""
entry=$(grep '^ipsrtd:' "$root/etc/passwd") || fail "no ipsrtd user"
uid=$(echo "$entry" | cut -d: -f3)
gid=$(echo "$entry" | cut -d: -f4)
[ "$uid" -lt 1000 ] || fail "ipsrtd is not a system user: $entry"
case "$entry" in */var/lib/ipsrtd:/usr/sbin/nologin) ;;
  *) fail "ipsrtd user home/shell: $entry" ;; esac
[ "$(stat -c '%u:%g %a' "$root/var/lib/ipsrtd")" = "$uid:$gid 750" ] ||
  fail "/var/lib/ipsrtd: $(stat -c '%u:%g %a' "$root/var/lib/ipsrtd")"
[ "$(stat -c '%u:%g %a' "$root/etc/ipsrtd/ipsrtd.yaml")" = "0:$gid 640" ] ||
  fail "ipsrtd.yaml: $(stat -c '%u:%g %a' "$root/etc/ipsrtd/ipsrtd.yaml")"
echo "postinst: user ipsrtd ($uid:$gid), /var/lib/ipsrtd 750"

# 3. The installed config checks, and the installed ipsrtd serves, as the
# ipsrtd user.
as_ipsrtd=(setpriv --reuid="$uid" --regid="$gid" --clear-groups)
"${as_ipsrtd[@]}" "$root/usr/bin/ipsrtd" \
  --config="$root/etc/ipsrtd/ipsrtd.yaml" --check_config ||
  fail "--check_config refused the installed config"
# The port file goes where the ipsrtd user may write.
mkdir -p "$work/run"
chown "$uid:$gid" "$work/run"
port_file="$work/run/port"
"${as_ipsrtd[@]}" "$root/usr/bin/ipsrtd" \
  --config="$root/etc/ipsrtd/ipsrtd.yaml" --listen=127.0.0.1:0 \
  --metrics_listen=127.0.0.1:0 --port_file="$port_file" \
  2>"$work/ipsrtd.log" &
server_pid=$!
for _ in $(seq 1 200); do
  [ -s "$port_file" ] && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/ipsrtd.log"; fail "ipsrtd exited"; }
  sleep 0.1
done
port=$(cat "$port_file")
"$root/usr/bin/ipsrt" --server="127.0.0.1:$port" health ||
  { cat "$work/ipsrtd.log"; fail "health"; }
metrics_port=$(sed -n 's/.*serving \/metrics on 127.0.0.1:\([0-9]*\).*/\1/p' \
               "$work/ipsrtd.log")
scrape=$(curl -sf "http://127.0.0.1:$metrics_port/metrics") || fail "no /metrics"
grep -q '^ipsrt_build_info{version="' <<<"$scrape" || fail "no ipsrt_build_info"
[ -f "$root/var/lib/ipsrtd/ipsrt.db" ] || fail "no database in /var/lib/ipsrtd"
[ "$(stat -c %u "$root/var/lib/ipsrtd/ipsrt.db")" = "$uid" ] ||
  fail "database not owned by ipsrtd"
kill -TERM "$server_pid"
wait "$server_pid" || fail "ipsrtd did not stop cleanly"
server_pid=""
echo "installed ipsrtd served health on port $port as uid $uid"

# 4. systemd's own check of the unit, where systemd-analyze exists. It
# resolves dependencies against the host's units and needs ExecStart to be
# executable, so the unit is checked with its binary paths pointing into
# the unpacked root (every other line as shipped).
if command -v systemd-analyze >/dev/null; then
  mkdir -p "$work/unit"
  sed "s|/usr/bin/ipsrtd|$root/usr/bin/ipsrtd|g" \
    "$root/usr/lib/systemd/system/ipsrtd.service" >"$work/unit/ipsrtd.service"
  systemd-analyze verify "$work/unit/ipsrtd.service" >"$work/verify.log" 2>&1 ||
    { cat "$work/verify.log"; fail "systemd-analyze verify"; }
  if grep -i "ipsrtd.service" "$work/verify.log"; then
    fail "systemd-analyze verify warned about ipsrtd.service"
  fi
  echo "systemd-analyze verify: ok"
else
  echo "systemd-analyze not found: unit not verified"
fi

# 5. Removal: prerm, the package's files, postrm purge. Health data in
# /var/lib/ipsrtd stays.
DPKG_ROOT="$root" sh "$work/control/prerm" remove
while read -r f; do
  [ -f "$root/$f" ] || [ -L "$root/$f" ] && rm -f "$root/$f"
done <"$work/contents"
DPKG_ROOT="$root" sh "$work/control/postrm" purge
[ ! -e "$root/usr/bin/ipsrtd" ] || fail "ipsrtd still installed"
! grep -q '^ipsrtd:' "$root/etc/passwd" || fail "purge kept the user"
[ -f "$root/var/lib/ipsrtd/ipsrt.db" ] || fail "purge removed the database"
echo "removed; the database stays"
echo PASS
