/* Stress test of fastnet's thread team (csrc/fn_team.c) on its own.
 *
 * Sessions of 2, 4 and 8 threads (oversubscribed on a small machine) run
 * phases of random chunk counts (1-300) and chunk costs, with random pauses
 * between them so that helpers fall asleep and are woken; a second thread
 * runs sessions at the same time (one of the two runs alone); a forked child
 * runs more.  Every chunk of every phase must run exactly once.
 *
 *   gcc -O2 -pthread -Icsrc tools/team_stress.c csrc/fn_team.c -o /tmp/team_stress
 *   gcc -O1 -g -fsanitize=thread -pthread -Icsrc tools/team_stress.c csrc/fn_team.c \
 *       -o /tmp/team_stress_tsan      (ThreadSanitizer; it skips the fork)
 */
#include "fn_team.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct {
    _Atomic int *runs;
    int cost;
} chunk_ctx;

static void count_chunk(const void *ctx, fn_int c)
{
    const chunk_ctx *x = ctx;
    atomic_fetch_add(&x->runs[c], 1);
    volatile double s = 0;
    for (int k = 0; k < x->cost; k++) s += k;
}

/* Phases of sessions on `threads` threads; returns the chunks not run once. */
static int run_sessions(int threads, int sessions, unsigned seed)
{
    unsigned r = seed;
    int bad = 0;
    for (int s = 0; s < sessions; s++) {
        fn_team *team = fn_team_begin(threads, 1e9);
        for (int p = 0; p < 20; p++) {
            r = r * 1103515245u + 12345u;
            const int n = 1 + (int)((r >> 16) % 300);
            _Atomic int *runs = calloc((size_t)n, sizeof *runs);
            const chunk_ctx ctx = {runs, (int)((r >> 8) % 2000)};
            fn_team_for(team, n, 1e9, count_chunk, &ctx);
            for (int i = 0; i < n; i++) bad += atomic_load(&runs[i]) != 1;
            free(runs);
            if ((r >> 4) % 7 == 0) usleep((r >> 10) % 300);
        }
        fn_team_end(team);
    }
    return bad;
}

static void *other_thread(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)run_sessions(3, 20, 99);
}

int main(void)
{
    int bad = 0;
    for (int threads = 2; threads <= 8; threads *= 2) bad += run_sessions(threads, 100, threads);
    pthread_t other;
    pthread_create(&other, NULL, other_thread, NULL);
    bad += run_sessions(4, 50, 7);
    void *other_bad;
    pthread_join(other, &other_bad);
    bad += (int)(intptr_t)other_bad;
#if !defined(__SANITIZE_THREAD__)
    const pid_t child = fork();
    if (child == 0) _exit(run_sessions(2, 20, 5) ? 1 : 0);
    int status = 0;
    waitpid(child, &status, 0);
    bad += !WIFEXITED(status) || WEXITSTATUS(status) != 0;
#endif
    fn_team_stats st;
    fn_team_get_stats(&st);
    printf("%s: %d bad chunks; %lld launches, %lld joins, %lld stalls, %lld busy, %d helpers, "
           "hand-off %.0f ns, wake-up %.0f ns\n", bad ? "FAILED" : "ok", bad,
           (long long)st.launches, (long long)st.joins, (long long)st.stalls,
           (long long)st.serial_busy, st.helpers, st.handoff_ns, st.wake_ns);
    return bad != 0;
}
