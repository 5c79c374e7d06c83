#!/bin/sh
# test_configure_with.sh: configure honours a site's own MPI, HDF5 and BLAS
# (the README's "Building with the site's modules"): MPICC=, --with-hdf5=DIR,
# --with-blas=DIR and --with-blas="LIBS" each land in the Makefile and are
# the ones configure's link tests used: a prefix without HDF5, a BLAS that
# does not exist, a missing directory and a missing MPICC are refused with
# their message (so no fallback to pkg-config hides a wrong path). Debian's
# parallel HDF5 folder is a prefix already; the BLAS prefix is made of links.
set -eu
: "${top_srcdir:?}"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/rlaif-configure.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
# Debian's parallel HDF5 library folder has include/ and lib/ links in it
h5=$(pkg-config --libs-only-L hdf5-openmpi 2>/dev/null | sed -n 's/^ *-L\([^ ]*\).*/\1/p')
[ -n "$h5" ] && [ -f "$h5/include/hdf5.h" ] || { echo "SKIP: no Debian parallel HDF5 prefix"; exit 77; }
ob=$(pkg-config --variable=libdir openblas 2>/dev/null || true)
ob=${ob%/}
obinc=$(pkg-config --variable=includedir openblas 2>/dev/null || true)
[ -n "$ob" ] && [ -f "$ob/libopenblas.so" ] || { echo "SKIP: no OpenBLAS found by pkg-config"; exit 77; }
mkdir -p "$tmp/ob" "$tmp/empty/include" "$tmp/empty/lib"
ln -s "$obinc" "$tmp/ob/include"
ln -s "$ob" "$tmp/ob/lib"
mpicc=$(command -v mpicc) || { echo "SKIP: no mpicc"; exit 77; }
n=0
# conf EXPECT ARGS...: configure in a fresh folder (one shared cache of the
# generic checks, so the same MPICC each time); EXPECT is ok or the message
# it must fail with
conf() {
  want=$1; shift
  n=$((n + 1)); dir="$tmp/b$n"; mkdir "$dir"
  if (cd "$dir" && "$top_srcdir/configure" --cache-file="${cache:-$tmp/config.cache}" "$@" >log 2>&1); then
    [ "$want" = ok ] || fail "configure $* succeeded; expected: $want"
  else
    [ "$want" != ok ] || { tail -20 "$dir/log"; fail "configure $* failed"; }
    grep -q "$want" "$dir/log" || { tail -5 "$dir/log"; fail "configure $* failed without '$want'"; }
  fi
  echo "ok: configure $* -> $want"
}
mk() { sed -n "s/^$1 = //p" "$dir/Makefile"; }

conf ok MPICC="$mpicc" --with-hdf5="$h5" --with-blas="$tmp/ob"
[ "$(mk CC)" = "$mpicc" ] || fail "MPICC=$mpicc gave CC = $(mk CC)"
case "$(mk HDF5_CFLAGS) $(mk HDF5_LIBS)" in
  *"-I$h5/include"*"-L$h5/lib"*"-lhdf5"*) ;;
  *) fail "--with-hdf5=$h5 gave HDF5 flags: $(mk HDF5_CFLAGS) $(mk HDF5_LIBS)" ;;
esac
case "$(mk BLAS_CFLAGS) $(mk BLAS_LIBS)" in
  *"-I$tmp/ob/include"*"-L$tmp/ob/lib"*"-lopenblas"*) ;;
  *) fail "--with-blas=$tmp/ob gave BLAS flags: $(mk BLAS_CFLAGS) $(mk BLAS_LIBS)" ;;
esac
conf ok MPICC="$mpicc" --with-blas="-L$tmp/ob/lib -lopenblas"
[ "$(mk BLAS_LIBS)" = "-L$tmp/ob/lib -lopenblas" ] || fail "--with-blas=LIBS gave BLAS_LIBS = $(mk BLAS_LIBS)"
conf "HDF5 is missing or was built without parallel" MPICC="$mpicc" --with-hdf5="$tmp/empty"
conf "no such directory" MPICC="$mpicc" --with-hdf5="$tmp/nonexistent"
conf "CBLAS with cblas_sgemm not found" MPICC="$mpicc" --with-blas="-L$tmp/empty/lib -lnosuchblas"
cache=/dev/null conf "the compiler '$tmp/nompicc' (from MPICC or CC) does not exist" MPICC="$tmp/nompicc"
echo "test_configure_with: all passed"
