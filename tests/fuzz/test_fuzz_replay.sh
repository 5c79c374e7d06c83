#!/bin/sh
# Replays every fuzz seed (tests/fuzz/corpus/<target>/) and every input that
# once crashed a target (tests/fuzz/regress/<target>/) through the target's
# checks, built without libFuzzer (tests/fuzz/replay_<target>). A crash,
# sanitizer report or failed invariant fails the test, naming the input.
set -u
: "${top_srcdir:?}" "${top_builddir:?}"
fail=0
for t in config ingest judge journal tokenizer tokenizer_files h5; do
  bin="$top_builddir/tests/fuzz/replay_$t"
  log="$top_builddir/tests/fuzz/replay_$t.log"
  if ! "$bin" "$top_srcdir/tests/fuzz/corpus/$t" "$top_srcdir/tests/fuzz/regress/$t" >"$log" 2>&1; then
    echo "FAIL replay_$t:"; tail -30 "$log"; fail=1
  else
    echo "ok replay_$t: $(tail -1 "$log")"
  fi
done
exit $fail
