#!/bin/sh
# Installs what Moat needs to build, run and test on Debian 12.
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends \
	ca-certificates git make gcc pkg-config lxc-dev liblxc1 lxc uidmap \
	busybox-static dnsmasq-base nftables iproute2 lxd-client procps curl
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	export PATH="/usr/local/go/bin:$PATH"
fi
go mod download
