# tests/e2e/lib.sh - the start the e2e shell tests share; sourced (POSIX sh)
# after `set -u`, as
#     . "${top_srcdir:?set by make check}/tests/e2e/lib.sh"
# make check exports RLAIF (the built binary) and top_srcdir; MPIEXEC and
# PYTHON_REF may name another mpiexec or Python (h5py, torch).
: "${RLAIF:?set by make check}" "${top_srcdir:?set by make check}"
mpi="${MPIEXEC:-mpiexec}"
py="${PYTHON_REF:-/usr/bin/python3}"
fail() {
    echo "FAIL: $*"
    exit 1
}
# e2e_tmpdir NAME: a fresh directory $d (/tmp/rlaif-NAME-XXXXXX), removed at
# exit. A script that must also stop processes at exit sets its own trap.
e2e_tmpdir() {
    d=$(mktemp -d "/tmp/rlaif-$1-XXXXXX") || fail "cannot create a directory in /tmp"
    trap 'rm -rf "$d"' EXIT
}
