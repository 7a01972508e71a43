/* The only place that knows whether OpenMP exists.
 *
 * Every kernel in csrc/ is "team-aware": it is called by all threads of the
 * enclosing OpenMP team (Cython opens the region with `parallel()`), splits
 * its work with orphaned `omp for` loops over a grid that depends on the
 * problem shape only, and never on the number of threads.  Outside a
 * parallel region, or in a build without OpenMP, the same code runs serially.
 */
#ifndef FN_OMP_H
#define FN_OMP_H

#ifdef _OPENMP
#include <omp.h>
#define FN_HAVE_OPENMP 1
#define FN_PRAGMA(x) _Pragma(#x)
#else
#define FN_HAVE_OPENMP 0
#define FN_PRAGMA(x)
#endif

static inline int fn_omp_max_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

static inline int fn_omp_thread_num(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* Vectorise the next loop (its iterations are independent); needs
 * -fopenmp or -fopenmp-simd, else it is ignored. */
#define FN_SIMD FN_PRAGMA_SIMD(omp simd)
#if defined(_OPENMP) || defined(FN_OPENMP_SIMD)
#define FN_PRAGMA_SIMD(x) _Pragma(#x)
#else
#define FN_PRAGMA_SIMD(x)
#endif

/* Run `call` on a team of `threads` (one parallel region), or directly on
 * the calling thread when that is one: libgomp's team of one still makes a
 * futex_wake syscall at every barrier (~30 per training step). */
#define FN_RUN_TEAM(threads, call) \
    do { \
        if ((threads) > 1) { FN_PRAGMA(omp parallel num_threads(threads)) { call; } } \
        else { call; } \
    } while (0)

/* Work-sharing loop over the grid; implicit barrier at its end. */
#define FN_OMP_FOR FN_PRAGMA(omp for schedule(static))
/* Same, with dynamic balancing for tiles of unequal cost. */
#define FN_OMP_FOR_DYNAMIC FN_PRAGMA(omp for schedule(dynamic, 1))
/* One thread runs the block; the others wait at its end. */
#define FN_OMP_SINGLE FN_PRAGMA(omp single)
#define FN_OMP_BARRIER FN_PRAGMA(omp barrier)
/* The team's master thread (the caller's) runs the block; no barrier. */
#define FN_OMP_MASTER FN_PRAGMA(omp master)

#endif
