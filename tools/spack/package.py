# Spack recipe for rlaif: copy this folder into a Spack repository as
# packages/rlaif/ (`spack repo create`, `spack repo add`), then
# `spack install rlaif` (or `rlaif+sanitizers`). tests/test_spack_recipe.py
# checks it against ./configure --help.
import os

from spack.package import *


class Rlaif(AutotoolsPackage):
    """Reinforcement Learning from AI Feedback on supercomputers: a C11 MPI
    batch application (SFT, preference collection with a judge LLM, reward
    model, PPO/REINFORCE/A2C/DPO, evaluation) on parallel HDF5."""

    homepage = "https://github.com/rlaif/rlaif"
    git = "https://github.com/rlaif/rlaif.git"

    # No release tarball yet: builds from git, so configure is generated.
    version("main", branch="main")

    variant("sanitizers", default=False,
            description="Build with AddressSanitizer and UndefinedBehaviorSanitizer")
    variant("werror", default=False,
            description="Turn compiler warnings into errors (the project's own CI does)")

    depends_on("c", type="build")
    depends_on("mpi")
    # MPI-IO in HDF5 (H5Pset_fapl_mpio): configure refuses a serial build
    depends_on("hdf5+mpi")
    # CBLAS from OpenBLAS: configure links -lopenblas and may call its
    # openblas_set_num_threads (one BLAS thread per OpenMP thread)
    depends_on("openblas")
    depends_on("curl")
    depends_on("jansson")
    depends_on("libinih")
    depends_on("pkgconfig", type="build")
    # the man page is made from the built program's --help
    depends_on("help2man", type="build")
    # Check: only `make check` needs it (configure warns without it)
    depends_on("check", type="test")

    with when("@main"):
        depends_on("autoconf", type="build")
        depends_on("automake", type="build")
        depends_on("libtool", type="build")
        depends_on("m4", type="build")
        # AX_PROG_CC_MPI
        depends_on("autoconf-archive", type="build")

    @when("@main")
    def autoreconf(self, spec, prefix):
        # autogen.sh makes m4/ and build-aux/ and runs autoreconf -fi; aclocal
        # finds AX_PROG_CC_MPI and PKG_CHECK_MODULES in the build deps
        dirs = [spec[d].prefix.share.aclocal for d in ("autoconf-archive", "pkgconfig")]
        if os.environ.get("ACLOCAL_PATH"):
            dirs.append(os.environ["ACLOCAL_PATH"])
        os.environ["ACLOCAL_PATH"] = ":".join(dirs)
        Executable("./autogen.sh")()

    def configure_args(self):
        spec = self.spec
        args = [
            "MPICC=" + spec["mpi"].mpicc,
            "--with-hdf5=" + spec["hdf5"].prefix,
            "--with-blas=" + spec["openblas"].libs.ld_flags,
        ]
        args += self.enable_or_disable("sanitizers")
        args += self.enable_or_disable("werror")
        return args

    def check(self):
        # The compiled unit and MPI tests (Check + the MPI launcher). The
        # Python reference tests want python3 with torch, h5py and numpy
        # (PYTHON_REF=...): run the whole `make check` by hand for those.
        make("check", "TESTS=$(filter tests/unit/% tests/mpi/%,$(check_PROGRAMS))")

    def installcheck(self):
        # the installed rlaif runs the installed demo job (well under 2 min)
        make("installcheck")
