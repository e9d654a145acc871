#!/bin/sh
# Creates the admin group and starts moatd in the background.
set -eu
cd "$(dirname "$0")/.."
STATE_DIR=${STATE_DIR:-/var/lib/moat}
GROUP=${GROUP:-moat}
getent group "$GROUP" >/dev/null || groupadd --system "$GROUP"
mkdir -p "$STATE_DIR"
if [ -f "$STATE_DIR/moatd.pid" ] && kill -0 "$(cat "$STATE_DIR/moatd.pid")" 2>/dev/null; then
	echo "moatd is already running (pid $(cat "$STATE_DIR/moatd.pid"))"
else
	nohup ./bin/moatd --state-dir "$STATE_DIR" --group "$GROUP" --verbose >>"$STATE_DIR/moatd.log" 2>&1 &
	echo $! >"$STATE_DIR/moatd.pid"
	i=0
	until [ -S "$STATE_DIR/unix.socket" ] && ./bin/moat --state-dir "$STATE_DIR" info >/dev/null 2>&1; do
		i=$((i + 1))
		if [ $i -gt 100 ]; then
			echo "moatd did not start; see $STATE_DIR/moatd.log" >&2
			exit 1
		fi
		sleep 0.05
	done
fi
cat <<MSG
moatd is running (pid $(cat "$STATE_DIR/moatd.pid")), state in $STATE_DIR, log in $STATE_DIR/moatd.log.
Members of the '$GROUP' group (and root) can use it:
  ./bin/moat --state-dir $STATE_DIR info
  LXD_DIR=$STATE_DIR lxc info
Stop it with: make stop
MSG

# --- containers (issue 4): import the busybox test image and launch a first
# hardened container (unprivileged, isolated ID map from the default profile).
SOCK="$STATE_DIR/unix.socket"
api() { curl -sf --unix-socket "$SOCK" "$@"; }
if ! api "http://moat/1.0/images/aliases/busybox" >/dev/null 2>&1; then
	go build -o bin/moat-mkimage ./cmd/moat-mkimage
	IMG="$STATE_DIR/busybox.tar.gz"
	FP=$(./bin/moat-mkimage -o "$IMG")
	OP=$(api -X POST -H 'Content-Type: application/octet-stream' --data-binary @"$IMG" "http://moat/1.0/images" |
		sed -n 's/.*"operation":"\([^"]*\)".*/\1/p')
	api "http://moat$OP/wait?timeout=60" | grep -q '"status":"Success"' || { echo "image import failed" >&2; exit 1; }
	api -X POST -d "{\"name\":\"busybox\",\"target\":\"$FP\"}" "http://moat/1.0/images/aliases" >/dev/null
	echo "Imported the busybox test image as 'busybox' ($FP)."
fi
if ! api "http://moat/1.0/instances/first" >/dev/null 2>&1; then
	OP=$(api -X POST -d '{"name":"first","source":{"type":"image","alias":"busybox"},"start":true}' "http://moat/1.0/instances" |
		sed -n 's/.*"operation":"\([^"]*\)".*/\1/p')
	api "http://moat$OP/wait?timeout=30" | grep -q '"status":"Success"' &&
		echo "Launched container 'first': LXD_DIR=$STATE_DIR lxc exec first -- cat /proc/self/uid_map"
fi
