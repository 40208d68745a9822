#!/bin/sh
# Usage: ensure-debian-package.sh "COMMAND [PATH...]" PACKAGE "what needs it"
# Makes a program available for the tests that need it: nothing to do when one of COMMAND or
# PATHs (globs allowed) is there; otherwise installs Debian's PACKAGE when we are root and
# apt-get exists, or says why the tests that need it will be skipped. Never fails the build.
candidates=$1 package=$2 purpose=$3
for candidate in $candidates; do
    if command -v "$candidate" >/dev/null 2>&1 || [ -x "$candidate" ]; then
        exit 0
    fi
done
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "$package not installed (and not root with apt-get): $purpose will be skipped" >&2
    exit 0
fi
echo "installing $package from Debian packages for $purpose..." >&2
if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
       DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$package" >/dev/null; }; then
    echo "could not install $package: $purpose will be skipped" >&2
fi
exit 0
