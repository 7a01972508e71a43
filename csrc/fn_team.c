/* fastnet's thread team (see fn_team.h for the contract).
 *
 * Why not OpenMP: the implicit barrier at the end of every OpenMP loop waits
 * for every thread of the team, including one that has not woken up yet or
 * whose core another process holds, and libgomp's waiters spin ~3 ms before
 * they sleep.  On a 2-vCPU guest right after a NumPy product (whose OpenBLAS
 * workers busy-wait ~0.1 s) a training epoch took 6-10x its quiet time that
 * way, and a 1-row predict on two threads 20x the one-thread time.  Here a
 * phase ends when its chunks are done, whoever did them.
 *
 * A phase.  The caller fills a slot (the body, its context and, per
 * participant, a contiguous home range of chunks: the same blocks a static
 * schedule gives) and publishes it in one word, `publish` = seq << 16 |
 * participants << 8 | slot (a helper beyond the participants never reads
 * the slot).
 * Each participant claims chunks from the front of its own range (a CAS on
 * its own cache line), then takes chunks from the back of the others'
 * ranges.  Each helper adds the number it finished to its own `done`
 * counter (monotonic, on the line the caller polls, apart from the line it
 * claims from), and the phase is over when they add up to the chunk count.
 *
 * Stale helpers.  A helper that read `publish` and was descheduled before
 * claiming must never claim a chunk of a later phase with the earlier
 * body.  So a helper pins the slot it works in: it stores the publish word
 * in its `announce`, then re-reads `publish`, and only when that is
 * unchanged does it read the slot.  The caller never refills the current
 * slot nor one that a helper announces (both sides use sequentially
 * consistent operations, so one of them sees the other: Dekker's
 * argument), and a pinned slot's ranges are empty once its phase is over,
 * so a stale helper finds nothing to claim.  There are helpers + 2 slots,
 * so a free one always exists; nobody waits for a stale helper.
 *
 * Sleeping.  A helper spins on `publish` and on its own `wake` word until
 * it has had nothing to do for spin_ns, then sleeps on `wake` (a futex on
 * Linux, a condition variable elsewhere).  The caller invites the helpers
 * of a session by bumping their `wake` words and wakes those that sleep
 * (`sleeping` and `wake` are again a Dekker pair). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "fn_team.h"

#include <stdlib.h>
#include <string.h>

#if defined(_WIN32) || defined(FN_NO_THREADS)
#define FN_TEAM_THREADS 0
#else
#define FN_TEAM_THREADS 1
#endif

#if FN_TEAM_THREADS

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <time.h>
#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#define FN_TEAM_MAX 64          /* participants, the caller included */
#define FN_TEAM_MIN_CAPACITY 8
#define FN_LINE 64
#define FN_SLOT_BITS 8
#define FN_PARTS_SHIFT 8
#define FN_SEQ_SHIFT 16
/* A wait for a helper's chunk this much longer than four chunks of the
 * caller's is a stall (see fn_run_phase). */
#define FN_STALL_NS 500000

/* One participant's share of a phase, with the phase's description (each
 * participant reads only its own line to start). */
typedef struct {
    _Atomic uint64_t range;     /* unclaimed chunks [next, end): next | end << 32 */
    fn_chunk_fn body;
    const void *ctx;
    uint64_t session;
    int parts;
} __attribute__((aligned(FN_LINE))) fn_share;

typedef struct {
    _Atomic uint64_t announce;  /* the publish word it works on: pins that slot */
    _Atomic int64_t done;       /* chunks it has finished, in all phases */
    _Atomic uint32_t wake;      /* bumped to invite it; its futex */
    _Atomic int sleeping;
    _Atomic int sleep_now;      /* the wake-up probe asks it to sleep at once */
    _Atomic int64_t joins;
    _Atomic int64_t woke_at_ns; /* when it last left its sleep */
    uint64_t last_session;      /* its own */
#ifndef __linux__
    pthread_mutex_t mutex;
    pthread_cond_t cond;
#endif
} __attribute__((aligned(FN_LINE))) fn_helper;

struct fn_team {
    _Atomic uint64_t publish __attribute__((aligned(FN_LINE)));
    /* the owner's side, from here on */
    _Atomic int owner __attribute__((aligned(FN_LINE)));
    int capacity, n_slots;
    _Atomic int helpers;        /* helper threads started */
    int create_failed;
    int parts;                  /* participants of the current session */
    int slot;                   /* slot of the last phase */
    int stalled;                /* helpers are left alone until quiet_until_ns */
    uint64_t seq, session;
    fn_share *shares;           /* n_slots x capacity lines */
    fn_helper *helper;          /* capacity - 1 */
    int64_t done_seen[FN_TEAM_MAX];   /* each helper's `done` when the last phase ended */
    int64_t quiet_until_ns, backoff_ns, last_quiet_end_ns, last_stall_ns;
    double wake_ns, handoff_ns;
    _Atomic int64_t spin_ns;    /* read by spinning helpers */
    int measured;
    int64_t measured_at_ns;
    _Atomic int64_t launches, stalls, serial_small, serial_quiet, serial_busy;
    pthread_mutex_t grow;
};

static fn_team fn_the_team = {.grow = PTHREAD_MUTEX_INITIALIZER};
static pthread_once_t fn_team_once = PTHREAD_ONCE_INIT;

#define FN_RELAXED memory_order_relaxed
#define FN_ACQUIRE memory_order_acquire
#define FN_RELEASE memory_order_release

static int64_t fn_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline void fn_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#else
    atomic_signal_fence(memory_order_seq_cst);
#endif
}

static inline fn_int fn_part_start(fn_int chunks, int parts, int p)
{
    return (fn_int)((double)chunks * p / parts);
}

static inline fn_share *fn_slot_share(fn_team *t, int slot, int p)
{
    return &t->shares[(size_t)slot * (size_t)t->capacity + (size_t)p];
}

/* ---- sleeping and waking ------------------------------------------------- */

static void fn_sleep_on(fn_helper *H, uint32_t value)
{
#ifdef __linux__
    syscall(SYS_futex, &H->wake, FUTEX_WAIT_PRIVATE, value, NULL, NULL, 0);
#else
    pthread_mutex_lock(&H->mutex);
    while (atomic_load(&H->wake) == value) pthread_cond_wait(&H->cond, &H->mutex);
    pthread_mutex_unlock(&H->mutex);
#endif
}

static void fn_wake_up(fn_helper *H)
{
#ifdef __linux__
    syscall(SYS_futex, &H->wake, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
#else
    pthread_mutex_lock(&H->mutex);
    pthread_cond_signal(&H->cond);
    pthread_mutex_unlock(&H->mutex);
#endif
}

/* Ask helper h to take part (again): a spinning helper restarts its spin
 * window, a sleeping one is woken.  Returns 1 when it had to be woken. */
static int fn_invite(fn_team *t, int h)
{
    fn_helper *H = &t->helper[h];
    atomic_store_explicit(&H->sleep_now, 0, FN_RELAXED);
    atomic_fetch_add(&H->wake, 1);                  /* seq_cst: Dekker with `sleeping` */
    if (!atomic_load(&H->sleeping)) return 0;
    fn_wake_up(H);
    return 1;
}

/* Sleep until invited; `*invited` is the wake value last seen. */
static void fn_helper_sleep(fn_team *t, fn_helper *H, uint64_t seen, uint32_t *invited)
{
    const uint32_t v = atomic_load(&H->wake);
    if (v == *invited) {
        atomic_store(&H->sleeping, 1);
        if (atomic_load(&H->wake) == v && atomic_load(&t->publish) == seen) {
            fn_sleep_on(H, v);
            atomic_store_explicit(&H->woke_at_ns, fn_now_ns(), FN_RELAXED);
        }
        atomic_store(&H->sleeping, 0);
    }
    *invited = atomic_load(&H->wake);
}

/* ---- claiming ------------------------------------------------------------ */

static inline fn_int fn_claim_front(fn_share *s)
{
    uint64_t r = atomic_load_explicit(&s->range, FN_RELAXED);
    for (;;) {
        const uint32_t next = (uint32_t)r, end = (uint32_t)(r >> 32);
        if (next >= end) return -1;
        if (atomic_compare_exchange_weak_explicit(&s->range, &r, r + 1, FN_ACQUIRE, FN_RELAXED))
            return (fn_int)next;
    }
}

static inline fn_int fn_claim_back(fn_share *s)
{
    uint64_t r = atomic_load_explicit(&s->range, FN_RELAXED);
    for (;;) {
        const uint32_t next = (uint32_t)r, end = (uint32_t)(r >> 32);
        if (next >= end) return -1;
        const uint64_t taken = (uint64_t)next | (uint64_t)(end - 1) << 32;
        if (atomic_compare_exchange_weak_explicit(&s->range, &r, taken, FN_ACQUIRE, FN_RELAXED))
            return (fn_int)(end - 1);
    }
}

/* Participant `me` of the phase in `slot`: its own range from the front,
 * then the others' from the back.  Returns the chunks it ran (a helper then
 * adds them to its `done`, with release order: the caller reads them). */
static int64_t fn_run_share(fn_team *t, int slot, int me)
{
    fn_share *own = fn_slot_share(t, slot, me);
    const fn_chunk_fn body = own->body;
    const void *ctx = own->ctx;
    const int parts = own->parts;
    int64_t done = 0;
    for (fn_int c; (c = fn_claim_front(own)) >= 0; done++) body(ctx, c);
    for (;;) {
        fn_share *victim = NULL;
        uint32_t most = 0;
        for (int p = 0; p < parts; p++) {
            fn_share *s = fn_slot_share(t, slot, p);
            const uint64_t r = atomic_load_explicit(&s->range, FN_RELAXED);
            const uint32_t left = (uint32_t)(r >> 32) - (uint32_t)r;
            if (p != me && (uint32_t)r < (uint32_t)(r >> 32) && left > most) {
                most = left;
                victim = s;
            }
        }
        if (!victim) break;
        const fn_int c = fn_claim_back(victim);
        if (c >= 0) {
            body(ctx, c);
            done++;
        }
    }
    return done;
}

/* ---- helpers ------------------------------------------------------------- */

static void *fn_helper_main(void *arg)
{
    fn_team *t = &fn_the_team;
    const int h = (int)(intptr_t)arg, me = h + 1;
    fn_helper *H = &t->helper[h];
    uint64_t seen = atomic_load_explicit(&t->publish, FN_ACQUIRE);
    uint32_t invited = atomic_load(&H->wake);
    int64_t active = fn_now_ns();      /* last invitation or chunk */
    for (;;) {
        uint64_t w;
        for (unsigned k = 1;; k++) {
            w = atomic_load_explicit(&t->publish, FN_ACQUIRE);
            if (w != seen) break;
            const uint32_t v = atomic_load_explicit(&H->wake, FN_RELAXED);
            if (v != invited) {
                invited = v;
                active = fn_now_ns();
            }
            if (atomic_load_explicit(&H->sleep_now, FN_RELAXED)
                || (k % 64 == 0
                    && fn_now_ns() - active > atomic_load_explicit(&t->spin_ns, FN_RELAXED))) {
                fn_helper_sleep(t, H, seen, &invited);
                active = fn_now_ns();
                continue;
            }
            fn_pause();
        }
        seen = w;
        if (me >= (int)((w >> FN_PARTS_SHIFT) & 0xff)) continue;    /* not in this phase */
        atomic_store(&H->announce, w);               /* pin, then check it still holds */
        if (atomic_load(&t->publish) != w) continue;
        const int slot = (int)(w & ((1u << FN_SLOT_BITS) - 1));
        const fn_share *own = fn_slot_share(t, slot, me);
        const int64_t ran = fn_run_share(t, slot, me);
        if (ran > 0) {
            atomic_fetch_add_explicit(&H->done, ran, FN_RELEASE);
            active = fn_now_ns();
            if (own->session != H->last_session) {
                H->last_session = own->session;
                atomic_fetch_add_explicit(&H->joins, 1, FN_RELAXED);
            }
        }
    }
    return NULL;
}

static void fn_team_reset(fn_team *t);

static pthread_rwlock_t fn_fork_gate;
static pthread_once_t fn_fork_gate_once = PTHREAD_ONCE_INIT;

static void fn_fork_gate_init(void)
{
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
#ifdef __GLIBC__
    /* a fork must not wait for ever behind a stream of overlapping calls */
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
#endif
    pthread_rwlock_init(&fn_fork_gate, &attr);
    pthread_rwlockattr_destroy(&attr);
}

void fn_fork_gate_enter(void)
{
    pthread_once(&fn_fork_gate_once, fn_fork_gate_init);
    pthread_rwlock_rdlock(&fn_fork_gate);
}

void fn_fork_gate_leave(void) { pthread_rwlock_unlock(&fn_fork_gate); }

static void fn_team_before_fork(void)
{
    pthread_once(&fn_fork_gate_once, fn_fork_gate_init);
    pthread_rwlock_wrlock(&fn_fork_gate);
}

static void fn_team_after_fork_in_parent(void) { pthread_rwlock_unlock(&fn_fork_gate); }

static void fn_team_after_fork_in_child(void)
{
    /* the child has only the forking thread: no helper exists any more */
    fn_team_reset(&fn_the_team);
    pthread_mutex_init(&fn_the_team.grow, NULL);
    fn_fork_gate_init();
}

static int fn_affinity_cpus(void)
{
#ifdef __linux__
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) return CPU_COUNT(&set);
#endif
    const long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static void fn_team_init(void)
{
    fn_team *t = &fn_the_team;
    /* the CPUs this process may use (fastnet caps its thread count there),
     * but at least FN_TEAM_MIN_CAPACITY: tests run oversubscribed teams to
     * show that results do not depend on the thread count */
    int cap = fn_affinity_cpus();
    if (cap < FN_TEAM_MIN_CAPACITY) cap = FN_TEAM_MIN_CAPACITY;
    if (cap > FN_TEAM_MAX) cap = FN_TEAM_MAX;
    t->capacity = cap;
    t->n_slots = cap + 1;          /* cap - 1 helpers' pins, the current slot, a free one */
    void *shares = NULL, *helpers = NULL;
    if (cap > 1
        && (posix_memalign(&shares, FN_LINE, sizeof(fn_share) * (size_t)t->n_slots * cap)
            || posix_memalign(&helpers, FN_LINE, sizeof(fn_helper) * (size_t)(cap - 1)))) {
        free(shares);
        shares = helpers = NULL;
    }
    t->shares = shares;
    t->helper = helpers;
    if (!shares) t->capacity = 1;
    atomic_store(&t->spin_ns, 1000000);    /* until measured */
    fn_team_reset(t);
    pthread_atfork(fn_team_before_fork, fn_team_after_fork_in_parent,
                   fn_team_after_fork_in_child);
}

/* Everything but the allocations and the measurements: no helper, no session. */
static void fn_team_reset(fn_team *t)
{
    atomic_store(&t->publish, 0);
    atomic_store(&t->owner, 0);
    atomic_store(&t->helpers, 0);
    t->create_failed = 0;
    t->parts = 1;
    t->slot = 0;
    t->stalled = 0;
    t->seq = 0;
    t->session = 0;
    t->quiet_until_ns = t->last_quiet_end_ns = t->last_stall_ns = 0;
    t->backoff_ns = 0;
    memset(t->done_seen, 0, sizeof t->done_seen);
    if (t->shares) memset(t->shares, 0, sizeof(fn_share) * (size_t)t->n_slots * t->capacity);
    for (int h = 0; t->helper && h < t->capacity - 1; h++) {
        fn_helper *H = &t->helper[h];
        memset(H, 0, sizeof *H);
#ifndef __linux__
        pthread_mutex_init(&H->mutex, NULL);
        pthread_cond_init(&H->cond, NULL);
#endif
    }
}

/* Start helpers until `want` exist; a failure stops creation for good (in
 * this process), never the process. */
static void fn_grow(fn_team *t, int want)
{
    if (want > t->capacity - 1) want = t->capacity - 1;
    if (atomic_load(&t->helpers) >= want || t->create_failed) return;
    pthread_mutex_lock(&t->grow);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);   /* helpers inherit: signals go elsewhere */
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    for (int h = atomic_load(&t->helpers); h < want; h++) {
        pthread_t id;
        if (pthread_create(&id, &attr, fn_helper_main, (void *)(intptr_t)h) != 0) {
            t->create_failed = 1;
            break;
        }
        atomic_store(&t->helpers, h + 1);
    }
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_mutex_unlock(&t->grow);
}

/* ---- phases -------------------------------------------------------------- */

static int fn_pick_slot(fn_team *t)
{
    unsigned char pinned[FN_TEAM_MAX + 1] = {0};
    pinned[t->slot] = 1;
    const int helpers = atomic_load_explicit(&t->helpers, FN_RELAXED);
    for (int h = 0; h < helpers; h++) {
        const uint64_t a = atomic_load(&t->helper[h].announce);
        if (a) pinned[a & ((1u << FN_SLOT_BITS) - 1)] = 1;
    }
    for (int i = 1; i <= t->n_slots; i++) {
        const int s = (t->slot + i) % t->n_slots;
        if (!pinned[s]) return s;
    }
    return -1;   /* cannot happen: helpers + 2 <= n_slots */
}

/* A stall.  One now and then (a helper preempted once) costs less than
 * running without helpers would; a second one within 50 ms (a process or a
 * spinning thread pool holding the helper's core) leaves the helpers alone
 * for 20 ms, twice as long each time stalls recur right after such a quiet
 * period, up to 1 s. */
static void fn_note_stall(fn_team *t, int64_t now)
{
    atomic_fetch_add_explicit(&t->stalls, 1, FN_RELAXED);
    const int64_t previous = t->last_stall_ns;
    t->last_stall_ns = now;
    if (!previous || now - previous > 50000000) return;
    const int64_t base = 20000000;
    const int recurring = t->backoff_ns > 0 && now - t->last_quiet_end_ns < 2 * t->backoff_ns;
    t->backoff_ns = recurring ? (2 * t->backoff_ns > 1000000000 ? 1000000000
                                                                : 2 * t->backoff_ns)
                              : base;
    t->quiet_until_ns = now + t->backoff_ns;
    t->last_quiet_end_ns = t->quiet_until_ns;
    t->stalled = 1;
}

/* Publish a phase on the session's team and take part as participant 0. */
static void fn_run_phase(fn_team *t, fn_int chunks, double work_ns, fn_chunk_fn body,
                         const void *ctx)
{
    const int parts = t->parts < chunks ? t->parts : (int)chunks;
    const int slot = fn_pick_slot(t);
    for (int p = 0; p < parts; p++) {
        fn_share *s = fn_slot_share(t, slot, p);
        const uint64_t lo = (uint64_t)fn_part_start(chunks, parts, p);
        const uint64_t hi = (uint64_t)fn_part_start(chunks, parts, p + 1);
        atomic_store_explicit(&s->range, lo | hi << 32, FN_RELAXED);
        s->body = body;
        s->ctx = ctx;
        s->session = t->session;
        s->parts = parts;
    }
    /* a helper of the session that fell asleep in a long serial stretch */
    if (work_ns >= 2 * t->wake_ns)
        for (int h = 0; h < parts - 1; h++)
            if (atomic_load_explicit(&t->helper[h].sleeping, FN_RELAXED)) fn_invite(t, h);
    t->slot = slot;
    t->seq++;
    atomic_store(&t->publish, t->seq << FN_SEQ_SHIFT | (uint64_t)parts << FN_PARTS_SHIFT
                                  | (uint64_t)slot);
    const int64_t start = fn_now_ns();
    const int64_t mine = fn_run_share(t, slot, 0);
    int64_t waited_from = 0;
    int stall = 0;
    for (unsigned k = 0;; k++) {
        int64_t done = mine;
        for (int h = 0; h < parts - 1; h++)
            done += atomic_load_explicit(&t->helper[h].done, FN_ACQUIRE) - t->done_seen[h];
        if (done >= chunks) break;
        if (k % 32 == 31) {
            /* a helper holds a chunk: a stall when it takes far longer than a
             * chunk took the caller, and longer than the host's hiccups (waits
             * of 30-70 us were common here, a descheduled helper takes
             * milliseconds) */
            const int64_t now = fn_now_ns();
            if (!waited_from) waited_from = now;
            const double per_chunk = mine ? (double)(waited_from - start) / (double)mine : 0;
            const double limit = 4 * per_chunk + FN_STALL_NS;
            if (mine && !stall && (double)(now - waited_from) > limit) {
                stall = 1;
                fn_note_stall(t, now);
            }
            if (stall) sched_yield();
        }
        fn_pause();
    }
    /* a helper only adds chunks it claimed in this phase, and all are
     * counted: these are the counters' values until the next phase */
    for (int h = 0; h < parts - 1; h++)
        t->done_seen[h] = atomic_load_explicit(&t->helper[h].done, FN_RELAXED);
}

void fn_team_for(fn_team *t, fn_int chunks, double work_ns, fn_chunk_fn body, const void *ctx)
{
    if (chunks <= 0) return;
    int serial = !t || t->parts < 2 || chunks < 2 || chunks >= (fn_int)1 << 31
                 || work_ns < 4 * t->handoff_ns;
    if (!serial && t->stalled) {
        /* helpers are left alone until the quiet period ends */
        if (fn_now_ns() < t->quiet_until_ns) serial = 1;
        else t->stalled = 0;
    }
    if (serial) {
        for (fn_int c = 0; c < chunks; c++) body(ctx, c);
        return;
    }
    fn_run_phase(t, chunks, work_ns, body, ctx);
}

/* ---- measurements (once, when the first helper starts) ------------------- */

typedef struct {
    _Atomic int64_t arrived_ns;
    _Atomic int gave_up;
} fn_probe;

/* Chunk 1 is the helper's: when it runs it, it notes the time; chunk 0 (the
 * caller's) waits up to 200 us for that, then gives up (and takes chunk 1). */
static void fn_probe_chunk(const void *ctx, fn_int c)
{
    fn_probe *p = (fn_probe *)ctx;
    if (c == 1) {
        if (!atomic_load(&p->gave_up)) atomic_store(&p->arrived_ns, fn_now_ns());
        return;
    }
    const int64_t until = fn_now_ns() + 200000;
    while (!atomic_load(&p->arrived_ns) && fn_now_ns() < until) fn_pause();
    atomic_store(&p->gave_up, 1);
}

static int fn_cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The q-quantile (0..1) of n values (sorted in place). */
static double fn_quantile(double *v, int n, double q)
{
    qsort(v, (size_t)n, sizeof *v, fn_cmp_double);
    return n ? v[(int)(q * (n - 1))] : 0;
}

/* Inviting a sleeping helper until it runs: helper 0 told to sleep, left
 * asleep 1 ms, then invited; the median of five. */
static void fn_measure_wake(fn_team *t)
{
    fn_helper *H = &t->helper[0];
    double wake[5];
    int n_wake = 0;
    for (int r = 0; r < 5; r++) {
        atomic_store(&H->sleep_now, 1);
        int64_t until = fn_now_ns() + 20000000;
        while (!atomic_load(&H->sleeping) && fn_now_ns() < until) fn_pause();
        if (!atomic_load(&H->sleeping)) continue;
        const struct timespec pause = {0, 1000000};
        nanosleep(&pause, NULL);
        atomic_store(&H->woke_at_ns, 0);
        const int64_t t0 = fn_now_ns();
        fn_invite(t, 0);
        until = t0 + 100000000;
        int64_t woke;
        while (!(woke = atomic_load(&H->woke_at_ns)) && fn_now_ns() < until) fn_pause();
        if (woke) wake[n_wake++] = (double)(woke - t0);
    }
    t->wake_ns = n_wake ? fn_quantile(wake, n_wake, 0.5) : 1e6;
    /* spin as long as a wake-up costs (within 50 us .. 1 ms): a helper then
     * never wastes more than twice what sleeping would have cost */
    const double spin = 2 * t->wake_ns;
    atomic_store(&t->spin_ns, spin < 50000 ? 50000 : spin > 1000000 ? 1000000 : (int64_t)spin);
}

/* Publishing a phase until a spinning helper claims its chunk: the lower
 * quartile of 31 phases of two chunks (on a busy machine the others include
 * the times the helper or the caller waited for a core, which is what the
 * stall detector is for, not the cost of a hand-off). */
static void fn_measure_handoff(fn_team *t)
{
    double handoff[31];
    int n_handoff = 0;
    const int parts = t->parts;
    t->parts = 2;
    t->handoff_ns = 0;
    for (int r = 0; r < 31; r++) {
        fn_probe p;
        atomic_init(&p.arrived_ns, 0);
        atomic_init(&p.gave_up, 0);
        fn_invite(t, 0);
        const int64_t t0 = fn_now_ns();
        fn_run_phase(t, 2, 1e9, fn_probe_chunk, &p);
        const int64_t arrived = atomic_load(&p.arrived_ns);
        if (arrived > t0) handoff[n_handoff++] = (double)(arrived - t0);
    }
    t->parts = parts;
    t->stalled = 0;
    t->quiet_until_ns = t->last_stall_ns = 0;
    t->backoff_ns = 0;
    t->handoff_ns = n_handoff ? fn_quantile(handoff, n_handoff, 0.25) : 1e5;
    t->measured_at_ns = fn_now_ns();
}

/* ---- sessions ------------------------------------------------------------ */

fn_team *fn_team_begin(int threads, double work_ns)
{
    if (threads <= 1) return NULL;
    pthread_once(&fn_team_once, fn_team_init);
    fn_team *t = &fn_the_team;
    if (t->capacity < 2) return NULL;
    int expected = 0;
    if (!atomic_compare_exchange_strong(&t->owner, &expected, 1)) {
        atomic_fetch_add_explicit(&t->serial_busy, 1, FN_RELAXED);
        return NULL;
    }
    if (t->quiet_until_ns && fn_now_ns() < t->quiet_until_ns) {
        atomic_fetch_add_explicit(&t->serial_quiet, 1, FN_RELAXED);
        atomic_store(&t->owner, 0);
        return NULL;
    }
    if (threads > t->capacity) threads = t->capacity;
    if (!t->measured) {
        /* the costs are unknown before the first helper runs: start one for
         * work that clearly needs it, and measure */
        if (work_ns < 20000) {
            atomic_fetch_add_explicit(&t->serial_small, 1, FN_RELAXED);
            atomic_store(&t->owner, 0);
            return NULL;
        }
        fn_grow(t, 1);
        if (atomic_load(&t->helpers) >= 1) {
            fn_measure_wake(t);
            fn_measure_handoff(t);
            t->measured = 1;
        }
    } else if (atomic_load(&t->helpers) >= 1
               && fn_now_ns() - t->measured_at_ns > (t->handoff_ns > 20000 ? 1 : 10) * 1e9) {
        /* the hand-off depends on where the helper runs and how busy the
         * machine is (a helper placed on the caller's busy CPU took 90-250 us
         * here, until the scheduler moved it): measured again every 10 s while
         * sessions want helpers, every second while it is slow (31 phases:
         * ~30 us when fast, at most ~6 ms) */
        fn_measure_handoff(t);
    }
    fn_grow(t, threads - 1);
    const int parts = 1 + (atomic_load(&t->helpers) < threads - 1 ? atomic_load(&t->helpers)
                                                                   : threads - 1);
    int asleep = 0;
    for (int h = 0; h < parts - 1; h++) asleep |= atomic_load(&t->helper[h].sleeping);
    /* below the cost of getting a partner, the caller is faster alone */
    const double invite_ns = asleep ? 2 * t->wake_ns : 25 * t->handoff_ns;
    if (parts < 2 || work_ns < invite_ns) {
        atomic_fetch_add_explicit(&t->serial_small, 1, FN_RELAXED);
        atomic_store(&t->owner, 0);
        return NULL;
    }
    for (int h = 0; h < parts - 1; h++) fn_invite(t, h);
    t->parts = parts;
    t->stalled = 0;
    t->session++;
    atomic_fetch_add_explicit(&t->launches, 1, FN_RELAXED);
    return t;
}

void fn_team_end(fn_team *t)
{
    if (!t) return;
    t->parts = 1;
    atomic_store(&t->owner, 0);
}

int fn_team_reserve(int threads)
{
    pthread_once(&fn_team_once, fn_team_init);
    fn_team *t = &fn_the_team;
    fn_grow(t, threads - 1);
    return 1 + atomic_load(&t->helpers);
}

void fn_team_get_stats(fn_team_stats *out)
{
    pthread_once(&fn_team_once, fn_team_init);
    fn_team *t = &fn_the_team;
    memset(out, 0, sizeof *out);
    out->launches = atomic_load_explicit(&t->launches, FN_RELAXED);
    out->stalls = atomic_load_explicit(&t->stalls, FN_RELAXED);
    out->serial_small = atomic_load_explicit(&t->serial_small, FN_RELAXED);
    out->serial_quiet = atomic_load_explicit(&t->serial_quiet, FN_RELAXED);
    out->serial_busy = atomic_load_explicit(&t->serial_busy, FN_RELAXED);
    out->helpers = atomic_load(&t->helpers);
    for (int h = 0; h < out->helpers; h++)
        out->joins += atomic_load_explicit(&t->helper[h].joins, FN_RELAXED);
    out->capacity = t->capacity;
    out->create_failed = t->create_failed;
    out->wake_ns = t->wake_ns;
    out->handoff_ns = t->handoff_ns;
    out->spin_ns = (double)atomic_load(&t->spin_ns);
}

int fn_team_available(void) { return 1; }

#else /* no threads: every session is the calling thread alone */

fn_team *fn_team_begin(int threads, double work_ns) { (void)threads; (void)work_ns; return NULL; }
void fn_team_end(fn_team *team) { (void)team; }
void fn_team_for(fn_team *team, fn_int chunks, double work_ns, fn_chunk_fn body,
                 const void *ctx)
{
    (void)team;
    (void)work_ns;
    for (fn_int c = 0; c < chunks; c++) body(ctx, c);
}
int fn_team_reserve(int threads) { (void)threads; return 1; }
void fn_team_get_stats(fn_team_stats *out) { memset(out, 0, sizeof *out); out->capacity = 1; }
int fn_team_available(void) { return 0; }
void fn_fork_gate_enter(void) {}
void fn_fork_gate_leave(void) {}

#endif
