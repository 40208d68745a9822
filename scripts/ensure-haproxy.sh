#!/bin/sh
# Make HAProxy available for the replica failover test and the fleet benchmark.
# Installs Debian's `haproxy` package only when it is missing, we are root and apt-get exists;
# otherwise it says why and the tests that need it are skipped. Never fails the build.
if command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ]; then
    exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "HAProxy not found (and not root with apt-get): the replica failover test will be skipped" >&2
    exit 0
fi
echo "installing HAProxy from Debian packages for the replica failover test..." >&2
if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
       DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends haproxy >/dev/null; }; then
    echo "could not install HAProxy: the replica failover test will be skipped" >&2
fi
exit 0
