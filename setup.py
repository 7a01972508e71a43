"""Build of fastnet's native core.

csrc/*.c is compiled once into a static library (C is a library, never
pasted into .pyx files) and linked into each Cython extension in fastnet/.
Threads are fastnet's own team on POSIX threads (csrc/fn_team.c); OpenMP is
used only for its SIMD directives (-fopenmp-simd: no OpenMP runtime).

Environment switches:
  FASTNET_SANITIZE=1        AddressSanitizer + UndefinedBehaviorSanitizer build
                            (run with LD_PRELOAD of libasan; see tools/sanitize.sh)
  FASTNET_SANITIZE=thread   ThreadSanitizer build (LD_PRELOAD of libtsan)
  FASTNET_DEBUG=1           -O0 -g and Cython bounds checks
"""
import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
CSRC = "csrc"
CORE_SOURCES = sorted(os.path.join(CSRC, f) for f in os.listdir(os.path.join(HERE, CSRC))
                      if f.endswith(".c"))
CORE_HEADERS = sorted(os.path.join(CSRC, f) for f in os.listdir(os.path.join(HERE, CSRC))
                      if f.endswith(".h"))
EXTENSIONS = ["_parallel", "_kernels", "_network"]


def _flag(name):
    return os.environ.get(name, "") not in ("", "0")


def thread_flags():
    """Compile and link flags of POSIX threads (fastnet's own team, csrc/fn_team.c)."""
    return ([], []) if sys.platform == "win32" else (["-pthread"], ["-pthread"])


THREAD_COMPILE, THREAD_LINK = thread_flags()
if _flag("FASTNET_DEBUG"):
    OPT = ["-O0", "-g"]
else:
    OPT = ["-O3"]
if os.environ.get("FASTNET_SANITIZE") == "thread":
    SANITIZE = ["-fsanitize=thread", "-g", "-fno-omit-frame-pointer"]
elif _flag("FASTNET_SANITIZE"):
    SANITIZE = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer",
                "-fno-sanitize-recover=undefined"]
else:
    SANITIZE = []
WARN = ["-Wall", "-Wno-unused-function", "-Wno-psabi"]
C_FLAGS = OPT + ["-std=gnu11", "-fPIC", "-fno-math-errno", "-fno-trapping-math",
                 "-fopenmp-simd", "-DFN_OPENMP_SIMD"] + WARN + THREAD_COMPILE + SANITIZE
EXT_COMPILE = OPT + ["-fno-math-errno", "-Wno-psabi", "-Wno-unused-function"] \
    + THREAD_COMPILE + SANITIZE
EXT_LINK = THREAD_LINK + SANITIZE


class BuildExt(build_ext):
    """Build the static core first, so every extension links the same objects."""

    def run(self):
        self.run_command("build_clib")
        clib = self.get_finalized_command("build_clib")
        for ext in self.extensions:
            ext.library_dirs.append(clib.build_clib)
        super().run()


def extensions():
    from Cython.Build import cythonize

    directives = {
        "language_level": 3,
        "boundscheck": _flag("FASTNET_DEBUG"),
        "wraparound": False,
        "initializedcheck": _flag("FASTNET_DEBUG"),
        "cdivision": True,
        "embedsignature": True,
    }
    exts = [
        Extension(
            f"fastnet.{name}",
            [f"fastnet/{name}.pyx"],
            include_dirs=[CSRC],
            libraries=["fastnet_core"],
            depends=CORE_HEADERS + CORE_SOURCES,
            extra_compile_args=EXT_COMPILE,
            extra_link_args=EXT_LINK,
        )
        for name in EXTENSIONS
    ]
    return cythonize(exts, compiler_directives=directives, include_path=[HERE])


setup(
    libraries=[("fastnet_core", {"sources": CORE_SOURCES, "include_dirs": [CSRC],
                                 "cflags": C_FLAGS, "obj_deps": {"": CORE_HEADERS}})],
    ext_modules=extensions(),
    cmdclass={"build_ext": BuildExt},
)
