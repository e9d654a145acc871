#!/bin/sh
# Creates the admin group and starts moatd in the background.
# Running it again is safe: it starts only what is not running and adds
# only what is missing (STATE_DIR, GROUP and BIN, the directory of the
# built moatd and moat, may be set).
set -eu
cd "$(dirname "$0")/.."
STATE_DIR=${STATE_DIR:-/var/lib/moat}
GROUP=${GROUP:-moat}
BIN=${BIN:-./bin}
getent group "$GROUP" >/dev/null || groupadd --system "$GROUP"
mkdir -p "$STATE_DIR"
if [ -f "$STATE_DIR/moatd.pid" ] && kill -0 "$(cat "$STATE_DIR/moatd.pid")" 2>/dev/null; then
	echo "moatd is already running (pid $(cat "$STATE_DIR/moatd.pid"))"
else
	nohup "$BIN/moatd" --state-dir "$STATE_DIR" --group "$GROUP" --verbose >>"$STATE_DIR/moatd.log" 2>&1 &
	echo $! >"$STATE_DIR/moatd.pid"
	i=0
	until [ -S "$STATE_DIR/unix.socket" ] && "$BIN/moat" --state-dir "$STATE_DIR" info >/dev/null 2>&1; do
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
  $BIN/moat --state-dir $STATE_DIR info
  LXD_DIR=$STATE_DIR lxc info
Stop it with: make stop
MSG

# --- containers (issue 4): import the busybox test image and launch a first
# hardened container (unprivileged, isolated ID map from the default profile).
SOCK="$STATE_DIR/unix.socket"
api() { curl -sf --unix-socket "$SOCK" "$@"; }
moat() { "$BIN/moat" --state-dir "$STATE_DIR" "$@"; }
fail() {
	echo "setup: $*" >&2
	exit 1
}
# An earlier version of this script left its image tarball here.
rm -f "$STATE_DIR/busybox.tar.gz"
if ! api "http://moat/1.0/images/aliases/busybox" >/dev/null 2>&1; then
	# The image may be there without its alias (deleted, or an earlier run
	# that stopped half-way): alias it rather than import it again.
	FP=$(api "http://moat/1.0/images?filter=properties.description+eq+%27BusyBox+test+image%27" |
		sed -n 's|.*"/1.0/images/\([0-9a-f]\{64\}\)".*|\1|p')
	if [ -n "$FP" ]; then
		echo "The busybox test image is already imported ($FP): adding its alias 'busybox'."
	else
		TMP=$(mktemp -d)
		trap 'rm -rf "$TMP"' EXIT
		go build -o "$BIN/moat-mkimage" ./cmd/moat-mkimage
		FP=$("$BIN/moat-mkimage" -o "$TMP/busybox.tar.gz")
		moat image import "$TMP/busybox.tar.gz" >/dev/null || fail "importing the busybox test image failed (the error is above)"
		rm -rf "$TMP"
		echo "Imported the busybox test image ($FP)."
	fi
	moat image alias create busybox "$FP" || fail "creating the image alias 'busybox' failed (the error is above)"
	echo "Added the image alias 'busybox'."
fi
if STATE=$(api "http://moat/1.0/instances/first"); then
	case $STATE in
	*'"status":"Stopped"'*)
		moat start first || fail "starting container 'first' failed (the error is above); see $STATE_DIR/moatd.log"
		echo "Started the stopped container 'first'."
		;;
	*) echo "Container 'first' already exists." ;;
	esac
else
	moat launch busybox first >/dev/null || fail "launching container 'first' failed (the error is above); see $STATE_DIR/moatd.log"
	echo "Launched container 'first': LXD_DIR=$STATE_DIR lxc exec first -- cat /proc/self/uid_map"
fi
