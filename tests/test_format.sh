#!/bin/sh
# Every C source and header is formatted as the repository's .clang-format
# says (generated files opt out with a "clang-format off" first line).
# Skips (77) when clang-format is not installed; tools/dev/install-deps installs it.
set -u
: "${top_srcdir:?set by make check}"
command -v clang-format >/dev/null 2>&1 || { echo "clang-format not installed: skip"; exit 77; }
cd "$top_srcdir" || exit 1
files=$(find src include tests tools -name '*.[ch]' | sort)
[ -n "$files" ] || { echo "no C files found under $top_srcdir"; exit 1; }
bad=0
for f in $files; do
  if ! clang-format --dry-run -Werror "$f" >/dev/null 2>&1; then
    echo "not clang-formatted: $f (fix: clang-format -i $f)"
    bad=$((bad + 1))
  fi
done
echo "$(echo "$files" | wc -l) files checked, $bad not formatted"
[ "$bad" = 0 ]
