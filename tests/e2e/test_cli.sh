#!/bin/sh
# Runs every row of tests/fixtures/bad-input.tsv against the built rlaif: exit code,
# message, exactly one ERROR line on failure, no crash, no hang.
set -u
. "${top_srcdir:?set by make check}/tests/e2e/lib.sh"
table="$top_srcdir/tests/fixtures/bad-input.tsv"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0
fail=0
row=0
tab=$(printf '\t')
while IFS="$tab" read -r np envs code expect job args; do
  case "$np" in '#'* | '') continue ;; esac
  row=$((row + 1))
  jobfile="$tmp/job$row.ini"
  if [ "$job" != "-" ]; then printf '%b\n' "$job" >"$jobfile"; fi
  args=$(printf '%s' "$args" | sed "s|@JOB@|$jobfile|g")
  envcmd=""
  if [ "$envs" != "-" ]; then envcmd=$(printf '%s' "$envs" | tr ',' ' '); fi
  if [ "$np" = 1 ]; then
    # shellcheck disable=SC2086
    (cd "$tmp" && env $envcmd timeout 60 "$RLAIF" $args) </dev/null >"$tmp/out" 2>&1
  else
    # shellcheck disable=SC2086
    (cd "$tmp" && env $envcmd timeout 60 "$MPIEXEC" -n "$np" --oversubscribe "$RLAIF" $args) </dev/null >"$tmp/out" 2>&1
  fi
  got=$?
  errors=$(grep -c '^ERROR' "$tmp/out")
  ok=1
  [ "$got" = "$code" ] || ok=0
  grep -qF -- "$expect" "$tmp/out" || ok=0
  if [ "$code" != 0 ] && [ "$errors" != 1 ]; then ok=0; fi
  if grep -qE 'Segmentation fault|AddressSanitizer|runtime error:|core dumped' "$tmp/out"; then ok=0; fi
  if [ $ok = 1 ]; then
    pass=$((pass + 1))
    echo "ok   $row: rlaif $args -> $got"
  else
    fail=$((fail + 1))
    echo "FAIL $row: rlaif $args (ranks $np, env $envs): exit $got (want $code), $errors ERROR lines, want text: $expect"
    sed 's/^/     | /' "$tmp/out" | head -20
  fi
done <"$table"
echo "$pass passed, $fail failed"
[ "$fail" = 0 ] && [ "$pass" -gt 0 ]
