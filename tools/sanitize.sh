#!/usr/bin/env bash
# AddressSanitizer + UndefinedBehaviorSanitizer run of the native kernels.
#
# Builds a copy of this checkout with FASTNET_SANITIZE=1 (setup.py adds
# -fsanitize=address,undefined) in a temporary directory, then runs the
# kernel and engine tests against it with the sanitizer runtimes preloaded
# (CPython itself is not instrumented).  Any report aborts the run.
#
#   bash tools/sanitize.sh [pytest args...]      (default: the kernel tests)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/fastnet-sanitize.XXXXXX")"
trap 'rm -rf "$work"' EXIT
cd "$here"
git ls-files -z | xargs -0 tar cf - | tar xf - -C "$work"
cd "$work"
FASTNET_SANITIZE=1 python setup.py build_ext --inplace > build.log 2>&1 || { tail -50 build.log; exit 1; }
export LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)"
export ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:abort_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export PYTHONPATH="$work"
if [ $# -eq 0 ]; then
  set -- tests/test_functional.py tests/test_determinism_kernels.py tests/test_functional_fuzz.py \
         tests/test_training_vs_torch.py
fi
# -s: a sanitizer report goes to stderr and must not be swallowed by capture
python -m pytest -q -s -p no:cacheprovider "$@"
