/* fastnet's thread team: the only place that knows about threads.
 *
 * A team-aware kernel (named *_team, see fastnet.h) is called by one thread
 * with a team handle, `fn_team *team`: the session the caller began with
 * fn_team_begin, or NULL to run everything on the calling thread.  Its
 * work-sharing loops are phases: fn_team_for(team, chunks, ...) runs
 * body(ctx, c) once for every chunk c of a grid fixed by the problem shape,
 * and returns when all are done.  The caller's thread starts on its own
 * share of the chunks at once; helper threads that are running claim
 * theirs, and whoever runs out of work takes unclaimed chunks from the
 * others.  So a helper that is asleep, descheduled or late delays nothing
 * but a chunk it actually holds, and as every chunk is computed the same
 * way whoever computes it, results have the same bits for any thread
 * count.  Everything between two phases runs on the caller's thread: a
 * helper only ever runs chunk bodies, and a chunk body only reads what the
 * phases before it finished and writes what no other chunk of its phase
 * touches.  Helpers spin for a short while after their last phase (as long
 * as waking one measured here costs), then sleep.
 *
 * State is static in fn_team.c: a process that links the core into several
 * modules must begin sessions from one of them only (fastnet: the
 * fastnet._parallel module); fn_team_for works on any handle. */
#ifndef FN_TEAM_H
#define FN_TEAM_H

#include <stddef.h>
#include <stdint.h>

typedef ptrdiff_t fn_int;
typedef struct fn_team fn_team;
/* One chunk of a phase: reads ctx, never writes what another chunk reads. */
typedef void (*fn_chunk_fn)(const void *ctx, fn_int chunk);

/* Begin a session on up to `threads` threads (the caller's included) for
 * about work_ns nanoseconds of single-thread work.  Returns NULL (run on
 * the calling thread alone) when threads <= 1, when the work is below what
 * inviting a helper costs (measured once at run time: a sleeping helper
 * costs a wake-up, a spinning one a hand-off), while helpers are being
 * left alone after a stall (see fn_team_for), when no helper thread could
 * be created, or when another thread's session is running. */
fn_team *fn_team_begin(int threads, double work_ns);
void fn_team_end(fn_team *team);
/* Run body(ctx, c) for c in [0, chunks) (see above).  work_ns estimates the
 * whole loop on one thread: below a few hand-offs the caller runs it alone.
 * When the caller has to wait for a chunk a helper holds far longer than a
 * chunk takes (a descheduled helper), sessions run without helpers for a
 * while (doubling, up to a second, while stalls recur). */
void fn_team_for(fn_team *team, fn_int chunks, double work_ns, fn_chunk_fn body,
                 const void *ctx);

/* Create helper threads now, so that sessions of up to `threads` threads
 * can run; returns the largest session size available (1: none could be
 * created, or no threads on this platform). */
int fn_team_reserve(int threads);

typedef struct {
    int64_t launches;        /* sessions that invited helpers */
    int64_t joins;           /* (session, helper) pairs where the helper ran a chunk */
    int64_t stalls;          /* phases whose caller waited on a descheduled helper */
    int64_t serial_small;    /* sessions kept on the caller: work below the invite cost */
    int64_t serial_quiet;    /* ... helpers left alone after a stall */
    int64_t serial_busy;     /* ... another thread's session was running */
    int helpers;             /* helper threads alive */
    int capacity;            /* largest session: the CPUs this process may use, 8 to 64 */
    int create_failed;       /* a helper thread could not be created */
    double wake_ns;          /* measured: inviting a sleeping helper until it runs */
    double handoff_ns;       /* measured: publishing a phase until a spinning helper claims */
    double spin_ns;          /* how long helpers spin before they sleep */
} fn_team_stats;

void fn_team_get_stats(fn_team_stats *out);
/* 1 when this build can run helper threads (POSIX threads). */
int fn_team_available(void);

/* A call into a library that takes its own locks (BLIS's memory broker)
 * goes between fn_fork_gate_enter and fn_fork_gate_leave: fork() waits
 * (at-fork handler) until no such call runs, so a child never inherits one
 * of those locks held by a thread it does not have. */
void fn_fork_gate_enter(void);
void fn_fork_gate_leave(void);

/* Vectorise the next loop (its iterations are independent); needs
 * -fopenmp-simd (OpenMP's SIMD directives only: no OpenMP runtime). */
#if defined(_OPENMP) || defined(FN_OPENMP_SIMD)
#define FN_SIMD _Pragma("omp simd")
#else
#define FN_SIMD
#endif

#endif
