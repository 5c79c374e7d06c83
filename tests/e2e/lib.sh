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
# mock_stat PORT KEY [now]: a counter of tools/dev/mock-judge on PORT, read
# once no answer's fate is open (GET /stats?settled=1: after a kill -9 the
# server decides from each socket whether the answer in flight was read);
# with "now", at once (while a client is still running).
mock_stat() {
    "$py" - "$@" <<'PY'
import json, sys, urllib.request
now = len(sys.argv) > 3 and sys.argv[3] == "now"
url = "http://127.0.0.1:%s/stats%s" % (sys.argv[1], "" if now else "?settled=1")
s = json.load(urllib.request.urlopen(url, timeout=30))
if not now and not s["settled"]:
    sys.exit("mock judge: answers still unsettled 10 s after asking: %r" % s)
print(s[sys.argv[2]])
PY
}
