"""Build of fastnet's native core.

csrc/*.c is compiled once into a static library (C is a library, never
pasted into .pyx files) and linked into each Cython extension in fastnet/.
OpenMP is found by compiling and running a small program; without it the
build warns and the kernels run serially.

Environment switches:
  FASTNET_FAIL_NO_OPENMP=1  fail instead of building without OpenMP
  FASTNET_SANITIZE=1        AddressSanitizer + UndefinedBehaviorSanitizer build
                            (run with LD_PRELOAD of libasan; see README)
  FASTNET_DEBUG=1           -O0 -g and Cython bounds checks
"""
import os
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import warnings

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


def openmp_flags():
    """Flags that compile and run an OpenMP program here, or [] (serial build)."""
    if sys.platform == "win32":
        return ["/openmp"], []
    cc = sysconfig.get_config_var("CC") or "cc"
    cc = cc.split()
    program = textwrap.dedent("""
        #include <omp.h>
        #include <stdio.h>
        int main(void) {
            int n = 0;
            #pragma omp parallel reduction(+:n)
            n += 1;
            printf("%d\\n", n == omp_get_max_threads());
            return 0;
        }
    """)
    with tempfile.TemporaryDirectory() as tmp:
        src, exe = os.path.join(tmp, "omp.c"), os.path.join(tmp, "omp")
        with open(src, "w") as fh:
            fh.write(program)
        try:
            subprocess.run(cc + ["-fopenmp", src, "-o", exe], check=True,
                           capture_output=True)
            out = subprocess.run([exe], check=True, capture_output=True, text=True).stdout
            if out.strip() == "1":
                return ["-fopenmp"], ["-fopenmp"]
        except (OSError, subprocess.CalledProcessError):
            pass
    message = ("fastnet: this compiler cannot build OpenMP code; the build continues "
               "with serial kernels (fastnet.build_info()['openmp'] will be False).")
    if _flag("FASTNET_FAIL_NO_OPENMP"):
        raise RuntimeError(message)
    warnings.warn(message)
    return [], []


OMP_COMPILE, OMP_LINK = openmp_flags()
if _flag("FASTNET_DEBUG"):
    OPT = ["-O0", "-g"]
else:
    OPT = ["-O3"]
SANITIZE = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer",
            "-fno-sanitize-recover=undefined"] if _flag("FASTNET_SANITIZE") else []
WARN = ["-Wall", "-Wno-unused-function", "-Wno-psabi"]
C_FLAGS = OPT + ["-std=gnu11", "-fPIC", "-fno-math-errno", "-fno-trapping-math", "-fopenmp-simd", "-DFN_OPENMP_SIMD"] + WARN + OMP_COMPILE + SANITIZE
EXT_COMPILE = OPT + ["-fno-math-errno", "-Wno-psabi", "-Wno-unused-function"] + OMP_COMPILE \
    + SANITIZE
EXT_LINK = OMP_LINK + SANITIZE


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
