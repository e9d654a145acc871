#!/bin/bash
# Runs the benchmarks as root (they start real daemons and containers):
# every "go test" command docs/benchmarks.md gives, in a sh block or inline
# in a row, exactly as written there, so the script cannot drift from the
# page. With an argument, only the commands that contain it
# (bench/run.sh GetServer). A failing benchmark fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"

# Lines of ```sh blocks, and `go test ...` code spans (which may wrap).
mapfile -t cmds < <(perl -0777 -ne '
	while (/^```sh\n(.*?)^```$|`(go test [^`]*)`/gms) {
		if (defined $1) { print "$_\n" for grep { /^go test / } split /\n/, $1 }
		else { (my $c = $2) =~ s/\s*\n\s*/ /g; print "$c\n" }
	}' docs/benchmarks.md | awk '!seen[$0]++')
if [ "${#cmds[@]}" -eq 0 ]; then
	echo "bench/run.sh: no go test command found in docs/benchmarks.md" >&2
	exit 1
fi
ran=0
for c in "${cmds[@]}"; do
	if [ $# -gt 0 ] && [[ "$c" != *"$1"* ]]; then
		continue
	fi
	echo "+ $c"
	eval "$c"
	ran=$((ran + 1))
done
if [ "$ran" -eq 0 ]; then
	echo "bench/run.sh: no documented command contains \"$1\"" >&2
	exit 1
fi
