#!/bin/sh
# test_install.sh: `make install DESTDIR=<tmp>`, then what a user of that
# installation runs, taken from the staged tree only: the installed rlaif
# (--help, --version, tokenize on the installed demo job), every user tool of
# tools/user/ installed in bin and answering --help, the man page (rendered
# with man -l, one section per command of --help, found through MANPATH),
# every job template of jobs/ (same bytes, scripts executable), and the Lmod
# modulefile: valid Lua (luac -p), and once loaded by Lmod itself, PATH,
# MANPATH, RLAIF_SHARE and RLAIF_JOBS lead to the staged files. Then
# `make uninstall` removes every file. A part whose tool is missing here
# (help2man, luac, Lmod) is reported and the test ends SKIP (77) after the
# other parts passed.
set -eu
: "${top_builddir:?}" "${top_srcdir:?}"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/rlaif-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
skipped=""
skip() { echo "SKIP: $*"; skipped="$skipped $1"; }
cd "$top_builddir"
unset MAKEFLAGS MFLAGS MAKELEVEL
# the installation folders this build was configured with
printf 'dirs:\n\t@echo "prefix=$(prefix) bindir=$(bindir) mandir=$(mandir) pkgdatadir=$(pkgdatadir) version=$(VERSION) help2man=$(HELP2MAN)"\n' >"$tmp/dirs.mk"
eval "$(make -s -f Makefile -f "$tmp/dirs.mk" dirs)"
S="$tmp/stage"
make -s install DESTDIR="$S" >"$tmp/install.log" 2>&1 || { cat "$tmp/install.log"; fail "make install DESTDIR=$S"; }
bin="$S$bindir" share="$S$pkgdatadir"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

echo "== the installed program"
"$bin/rlaif" --help >"$tmp/help" || fail "installed rlaif --help exits $?"
grep -q '^  sft  ' "$tmp/help" || fail "installed rlaif --help lists no sft"
[ "$("$bin/rlaif" --version)" = "rlaif $version" ] || fail "installed rlaif --version: $("$bin/rlaif" --version)"
ids=$("$bin/rlaif" tokenize "$share/jobs/demo.ini" "What is 47 plus 38?")
[ "$ids" = "$("$top_builddir/src/rlaif" tokenize "$top_srcdir/jobs/demo.ini" "What is 47 plus 38?")" ] ||
  fail "installed rlaif tokenize gives '$ids', the build's rlaif something else"
[ -n "$ids" ] || fail "installed rlaif tokenize printed nothing"

echo "== the user tools (every file of tools/user/)"
for t in "$top_srcdir"/tools/user/*; do
  name=$(basename "$t")
  case $name in *.py) # a module the tools share, not a command
    cmp -s "$t" "$share/python/$name" || fail "tools/user/$name is not installed in $share/python"
    continue ;;
  esac
  [ -x "$bin/$name" ] || fail "tools/user/$name is not installed in $bindir (dist_bin_SCRIPTS)"
  cmp -s "$t" "$bin/$name" || fail "$bin/$name differs from tools/user/$name"
  "$bin/$name" --help >"$tmp/tool" 2>&1 || { cat "$tmp/tool"; fail "installed $name --help exits nonzero"; }
  grep -qi 'usage' "$tmp/tool" || fail "installed $name --help prints no usage"
done

echo "== the job templates (every file of jobs/)"
for j in "$top_srcdir"/jobs/*; do
  name=$(basename "$j")
  cmp -s "$j" "$share/jobs/$name" || fail "jobs/$name is not installed (or differs) in $pkgdatadir/jobs"
  if [ -x "$j" ] && [ ! -x "$share/jobs/$name" ]; then fail "$pkgdatadir/jobs/$name lost its x bit"; fi
done

echo "== the man page"
man1="$S$mandir/man1/rlaif.1"
if [ -z "$help2man" ]; then
  skip help2man "configure found no help2man: no man page built (apt-get install help2man)"
else
  [ -f "$man1" ] || fail "no $mandir/man1/rlaif.1 installed"
  MANWIDTH=100 man -l "$man1" >"$tmp/man.txt" 2>"$tmp/man.err" || fail "man -l rlaif.1: $(cat "$tmp/man.err")"
  [ ! -s "$tmp/man.err" ] || fail "man -l rlaif.1 warns: $(cat "$tmp/man.err")"
  for c in $(sed -n '/^commands:$/,/^$/s/^  \([a-z0-9-]*\) .*/\1/p' "$tmp/help"); do
    grep -q "^   rlaif $c\$" "$tmp/man.txt" || fail "the man page has no section for 'rlaif $c'"
  done
  grep -q -- '--show-config' "$tmp/man.txt" || fail "the man page lacks --show-config"
  grep -q "$pkgdatadir/jobs/" "$tmp/man.txt" || fail "the man page's FILES do not name $pkgdatadir/jobs/"
  [ "$(MANPATH="$S$mandir" man -w rlaif)" = "$man1" ] || fail "man -w rlaif with MANPATH=$S$mandir"
fi

echo "== the Lmod modulefile"
mf="$share/modulefiles/rlaif/$version.lua"
[ -f "$mf" ] || fail "no $pkgdatadir/modulefiles/rlaif/$version.lua installed"
! grep -n '%[a-zA-Z]*%' "$mf" || fail "unreplaced %words% in the installed modulefile"
grep -q "\"$bindir\"" "$mf" && grep -q "\"$mandir\"" "$mf" && grep -q "\"$pkgdatadir\"" "$mf" ||
  fail "the modulefile does not name this installation's bindir, mandir and pkgdatadir"
luac=$(command -v luac5.3 || command -v luac5.4 || command -v luac || true)
if [ -z "$luac" ]; then
  skip luac "no luac (apt-get install lua5.3)"
else
  "$luac" -p "$mf" || fail "$luac -p: the modulefile is not valid Lua"
fi
lmod=${LMOD_CMD:-/usr/share/lmod/lmod/libexec/lmod}
if [ ! -x "$lmod" ]; then
  skip lmod "no Lmod at $lmod (apt-get install lmod)"
else
  # the modulefile names the final paths; for the staged tree they get $S in front
  mkdir -p "$tmp/modules/rlaif"
  sed "s|\"$prefix|\"$S$prefix|g" "$mf" >"$tmp/modules/rlaif/$version.lua"
  (
    unset MANPATH LOADEDMODULES _LMFILES_
    export MODULEPATH="$tmp/modules"
    eval "$("$lmod" sh load rlaif)"
    [ "$(command -v rlaif)" = "$bin/rlaif" ] || fail "after module load, rlaif is $(command -v rlaif)"
    for t in "$top_srcdir"/tools/user/*; do
      case $t in *.py) continue ;; esac # the tools' shared module, not a command
      [ "$(command -v "$(basename "$t")")" = "$bin/$(basename "$t")" ] || fail "after module load, no $(basename "$t") on PATH"
    done
    [ -f "$RLAIF_JOBS/rlaif-step.sh" ] || fail "RLAIF_JOBS=$RLAIF_JOBS has no rlaif-step.sh"
    [ -f "$RLAIF_SHARE/jobs/demo.ini" ] || fail "RLAIF_SHARE=$RLAIF_SHARE has no jobs/demo.ini"
    if [ -n "$help2man" ]; then
      [ "$(man -w rlaif)" = "$man1" ] || fail "after module load, man -w rlaif is '$(man -w rlaif 2>&1)'"
    fi
    # MANPATH set by the module still lets man find the system's pages
    if env -u MANPATH man -w man >/dev/null 2>&1; then
      man -w man >/dev/null 2>&1 || fail "after module load (MANPATH=$MANPATH) man finds no system pages"
    fi
  ) || exit 1
fi

echo "== make uninstall"
make -s uninstall DESTDIR="$S" >"$tmp/uninstall.log" 2>&1 || { cat "$tmp/uninstall.log"; fail "make uninstall"; }
left=$(find "$S" -type f)
[ -z "$left" ] || fail "make uninstall left: $left"

if [ -n "$skipped" ]; then
  echo "test_install: the rest passed; not checked here:$skipped"
  exit 77
fi
echo "test_install: all passed"
