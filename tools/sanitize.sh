#!/usr/bin/env bash
# AddressSanitizer + UndefinedBehaviorSanitizer run of the native kernels,
# or (--thread) a ThreadSanitizer run of the thread team's.
#
# Builds a copy of this checkout with FASTNET_SANITIZE=1 (setup.py adds
# -fsanitize=address,undefined; --thread: FASTNET_SANITIZE=thread) in a
# temporary directory, then runs the tests against it with the sanitizer
# runtimes preloaded (CPython itself is not instrumented).  Any report aborts
# the run.
#
#   bash tools/sanitize.sh [pytest args...]            (default: the kernel tests)
#   bash tools/sanitize.sh --thread [pytest args...]   (default: the team's tests)
set -euo pipefail
mode=address
if [ "${1:-}" = "--thread" ]; then
  mode=thread
  shift
fi
here="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/fastnet-sanitize.XXXXXX")"
trap 'rm -rf "$work"' EXIT
cd "$here"
git ls-files -z | xargs -0 tar cf - | tar xf - -C "$work"
cd "$work"
if [ $mode = thread ]; then
  FASTNET_SANITIZE=thread python setup.py build_ext --inplace > build.log 2>&1 ||
    { tail -50 build.log; exit 1; }
  export LD_PRELOAD="$(gcc -print-file-name=libtsan.so)"
  # NumPy's OpenBLAS is not instrumented: its own thread pool's hand-offs
  # (spin-waits TSan cannot see) read as races inside it
  printf 'race:libscipy_openblas\nrace:libopenblas\n' > tsan.supp
  export TSAN_OPTIONS="halt_on_error=1:report_signal_unsafe=0:suppressions=$work/tsan.supp"
  if [ $# -eq 0 ]; then
    # (the subprocess tests of test_team.py run uninstrumented children)
    set -- tests/test_team.py tests/test_determinism_kernels.py tests/test_step_blocks.py
  fi
else
  FASTNET_SANITIZE=1 python setup.py build_ext --inplace > build.log 2>&1 ||
    { tail -50 build.log; exit 1; }
  export LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)"
  export ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:abort_on_error=1
  export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
  if [ $# -eq 0 ]; then
    # (tests that measure RSS, count team launches against a wake-up cost measured at
    # run time, or set ulimit -v cannot hold under ASan's shadow memory and slowdown)
    set -- tests/test_functional.py tests/test_determinism_kernels.py \
           tests/test_functional_fuzz.py tests/test_training_vs_torch.py tests/test_team.py \
           tests/test_step_blocks.py tests/test_activations.py tests/test_layer_norm.py \
           tests/test_targets.py tests/test_inputs.py tests/test_model_files.py \
           tests/test_blis_kernels.py \
           -k "not test_small_inference_makes_no_team_launch and not test_failed_thread_creation and not test_extra_memory_of_a_fit and not float64_memory_map"
  fi
fi
export PYTHONPATH="$work"
# -s: a sanitizer report goes to stderr and must not be swallowed by capture
python -m pytest -q -s -p no:cacheprovider "$@"
