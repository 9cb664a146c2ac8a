#!/usr/bin/env bash
# Debian packages that tests of external systems need (SLURM, a headless Chromium), installed
# with apt-get where that is possible: root, apt-get present, a package mirror reachable.
#
#   tools/apt_install.sh PACKAGE...
#
# Exit 0 once installed; exit 3 with one line on stderr saying why where it cannot be (the
# callers then skip: the system is external to the project, not a missing feature of it).
# The package lists of a fresh container are empty, so they are refreshed when the first
# install attempt finds nothing.
set -euo pipefail

die() { echo "apt_install.sh: $1" >&2; exit 3; }

[ $# -gt 0 ] || die "name the packages to install"
command -v apt-get >/dev/null || die "$* not installed and there is no apt-get to install them"
[ "$(id -u)" = 0 ] || die "$* not installed and installing them needs root (apt-get install $*)"
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! apt-get install -y -qq --no-install-recommends "$@" >"$log" 2>&1; then
    if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "$@"; } >"$log" 2>&1; then
        why=$(grep -E '^(E|W):' "$log" | tail -1)
        die "apt-get could not install $*: ${why:-no message from apt-get}"
    fi
fi
