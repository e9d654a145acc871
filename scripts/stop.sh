#!/bin/sh
# Stops the moatd that scripts/setup.sh started (by its recorded pid).
set -eu
STATE_DIR=${STATE_DIR:-/var/lib/moat}
pidfile="$STATE_DIR/moatd.pid"
[ -f "$pidfile" ] || { echo "no $pidfile: moatd was not started by make setup"; exit 0; }
pid=$(cat "$pidfile")
if kill -0 "$pid" 2>/dev/null; then
	kill -TERM "$pid"
	while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
	echo "moatd (pid $pid) stopped"
fi
rm -f "$pidfile"
