#!/bin/sh
# Regenerate configure and Makefile.in. Needs autoconf, automake, libtool,
# pkg-config and autoconf-archive (tools/dev/install-deps installs them).
set -e
cd "$(dirname "$0")"
if [ ! -f /usr/share/aclocal/ax_prog_cc_mpi.m4 ] && ! aclocal --print-ac-dir >/dev/null 2>&1; then
  echo "autogen.sh: aclocal missing: apt-get install autoconf automake autoconf-archive" >&2
  exit 1
fi
mkdir -p m4 build-aux
autoreconf -fi
