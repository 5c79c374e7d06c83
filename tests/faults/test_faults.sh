#!/bin/sh
# make check's entry to the fault matrix (tests/faults/matrix, run by
# tests/faults/run-matrix). In the --enable-sanitizers build every process is
# several times slower, so CI's budget holds one row of each fault kind and
# rank kind there; the plain build runs every row.
: "${top_srcdir:?set by make check}" "${top_builddir:?set by make check}"
if grep -q 'fsanitize' "$top_builddir/config.h" 2>/dev/null; then
  exec sh "$top_srcdir/tests/faults/run-matrix" \
    'kill-learner-sft\|kill-judge-collect\|kill-rollout-eval\|kill-learner-dpo\|damaged-older\|malformed-job\|fake-api-key'
fi
exec sh "$top_srcdir/tests/faults/run-matrix"
