"""test_spack_recipe.py: tools/spack/package.py loads under a stub of Spack's
`spack.package` (its directives record their calls), and agrees with the
build: every option its configure_args() passes, for every combination of
its variants, is one `./configure --help` lists; every --enable/--with option
configure.ac declares is passed; every library configure.ac looks up with
PKG_CHECK_MODULES is a dependency, and configure_args only reads
dependencies the recipe declares. No Spack is needed (it is not installed)."""
import importlib.util
import itertools
import os
import re
import subprocess
import sys
import types

SRC = os.environ.get("top_srcdir", os.path.join(os.path.dirname(__file__), ".."))
# configure.ac's PKG_CHECK_MODULES names -> the Spack package providing them
PKG_TO_SPACK = {"hdf5-openmpi": "hdf5", "openblas": "openblas", "libcurl": "curl",
                "jansson": "jansson", "inih": "libinih", "check": "check"}

calls = []       # (directive, args, kwargs, enclosing when conditions)
when_stack = []


class When:
    """`with when(...)` scopes directives; `@when(...)` marks a method."""
    def __init__(self, cond):
        self.cond = cond

    def __enter__(self):
        when_stack.append(self.cond)

    def __exit__(self, *exc):
        when_stack.pop()

    def __call__(self, fn):
        fn.spack_when = self.cond
        return fn


def directive(name):
    def record(*args, **kwargs):
        calls.append((name, args, kwargs, tuple(when_stack)))
    return record


class Prefix(str):
    def __getattr__(self, name):
        return Prefix(self + "/" + name)


class Libs:
    def __init__(self, name):
        self.ld_flags = "-L/spack/%s/lib -l%s" % (name, name)


class Dep:
    def __init__(self, name):
        self.prefix = Prefix("/spack/" + name)
        self.libs = Libs(name)
        self.mpicc = "/spack/%s/bin/mpicc" % name


class Spec:
    def __init__(self, variants, deps):
        self.variants, self.deps = variants, deps

    def __getitem__(self, name):
        assert name in self.deps, "configure_args reads spec[%r], not a dependency" % name
        return Dep(name)

    def __contains__(self, s):
        return self.variants.get(s[1:]) == (s[0] == "+")


class AutotoolsPackage:
    def _flag(self, name, on, off):
        return ["--%s-%s" % (on if self.spec.variants[name] else off, name)]

    def enable_or_disable(self, name):
        return self._flag(name, "enable", "disable")

    def with_or_without(self, name):
        return self._flag(name, "with", "without")


stub = types.ModuleType("spack.package")
for d in ("version", "variant", "depends_on", "conflicts", "maintainers", "license", "patch",
          "provides", "resource"):
    setattr(stub, d, directive(d))
stub.when = When
stub.AutotoolsPackage = AutotoolsPackage
stub.Executable = lambda *a: (lambda *b, **k: None)
stub.make = lambda *a, **k: None
stub.__all__ = [n for n in vars(stub) if not n.startswith("_")]
sys.modules["spack"] = types.ModuleType("spack")
sys.modules["spack.package"] = stub

failures = []


def check(ok, msg):
    if not ok:
        failures.append(msg)


spec_ = importlib.util.spec_from_file_location("rlaif_recipe", os.path.join(SRC, "tools/spack/package.py"))
recipe = importlib.util.module_from_spec(spec_)
spec_.loader.exec_module(recipe)
Rlaif = recipe.Rlaif
check(issubclass(Rlaif, AutotoolsPackage), "Rlaif is not an AutotoolsPackage")

deps = {}
for name, args, kwargs, whens in calls:
    if name == "depends_on":
        deps[re.split(r"[+~@ ]", args[0])[0]] = (args[0], kwargs.get("type"), whens)
variants = {args[0]: kwargs.get("default") for name, args, kwargs, _ in calls if name == "variant"}
versions = [args[0] for name, args, _, _ in calls if name == "version"]
print("versions:", versions, "variants:", variants)
print("dependencies:", ", ".join(sorted(deps)))

# what configure.ac requires
ac = open(os.path.join(SRC, "configure.ac")).read()
for mod in re.findall(r"PKG_CHECK_MODULES\(\[\w+\], \[([\w-]+)", ac):
    check(mod in PKG_TO_SPACK, "configure.ac looks up '%s': map it to a Spack package here" % mod)
    check(PKG_TO_SPACK.get(mod) in deps, "configure.ac needs %s; the recipe has no depends_on" % mod)
check(deps.get("hdf5", ("",))[0].startswith("hdf5+mpi"), "HDF5 must be depends_on('hdf5+mpi')")
check("mpi" in deps, "no depends_on('mpi')")
check(deps.get("check", (0, None))[1] == "test", "Check should be a test dependency")
for tool in ("autoconf", "automake", "libtool", "autoconf-archive"):
    check(tool in deps and deps[tool][2] == ("@main",) and deps[tool][1] == "build",
          "a git build runs autogen.sh: depends_on('%s', type='build') under when('@main')" % tool)
check(getattr(Rlaif.autoreconf, "spack_when", None) == "@main", "autoreconf is not @when('@main')")
check(variants.get("sanitizers") is False, "variant sanitizers should exist, off by default")

# what ./configure --help offers
helptext = subprocess.run([os.path.join(SRC, "configure"), "--help"], check=True,
                          capture_output=True, text=True).stdout
offered = set(re.findall(r"^\s+--(?:enable|disable|with|without)-([\w-]+)", helptext, re.M)) - {"FEATURE", "PACKAGE"}
precious = set(re.findall(r"^  ([A-Z][A-Z0-9_]*)\b", helptext.split("influential environment variables")[1], re.M))
declared = set(re.findall(r"AC_ARG_(?:WITH|ENABLE)\(\[([\w-]+)\]", ac))
check(declared, "no AC_ARG_WITH/AC_ARG_ENABLE found in configure.ac")

passed = set()
names = sorted(variants)
for values in itertools.product([False, True], repeat=len(names)):
    pkg = Rlaif.__new__(Rlaif)
    pkg.spec = Spec(dict(zip(names, values)), deps)
    args = pkg.configure_args()
    print("configure_args %s: %s" % (dict(zip(names, values)), " ".join(args)))
    for a in args:
        m = re.match(r"--(?:enable|disable|with|without)-([\w-]+)(=.*)?$", a)
        if m:
            passed.add(m.group(1))
            check(m.group(1) in offered, "the recipe passes %s: ./configure --help has no such option" % a)
        elif re.match(r"[A-Z][A-Z0-9_]*=", a):
            check(a.split("=")[0] in precious, "the recipe sets %s: not a variable ./configure --help lists" % a)
        else:
            check(False, "configure argument %r is neither an option nor VAR=value" % a)
    for v, on in zip(names, values):
        if v in declared:
            want = ("--enable-" if on else "--disable-") + v
            check(want in args or ("--with-" if on else "--without-") + v in args,
                  "variant %s=%s does not pass %s" % (v, on, want))
for opt in sorted(declared - passed):
    check(False, "configure.ac declares --enable/--with-%s; the recipe never passes it" % opt)

if failures:
    print("\n".join("FAIL: " + f for f in failures))
    sys.exit(1)
print("test_spack_recipe: all passed (options checked: %s)" % ", ".join(sorted(passed)))
