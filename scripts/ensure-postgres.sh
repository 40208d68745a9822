#!/bin/sh
# Make PostgreSQL's server binaries (initdb, pg_ctl) available for the PostgreSQL retriever tests.
# Installs Debian's `postgresql` package only when it is missing, we are root and apt-get exists;
# otherwise it says why and the tests that need it are skipped. Never fails the build.
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "PostgreSQL server not found (and not root with apt-get): its retriever tests will be skipped" >&2
    exit 0
fi
echo "installing PostgreSQL from Debian packages for the retriever tests..." >&2
if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
       DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null; }; then
    echo "could not install PostgreSQL: its retriever tests will be skipped" >&2
fi
exit 0
