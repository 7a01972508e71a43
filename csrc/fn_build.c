/* What this build of the native core was compiled with. */
#include "fn_internal.h"

const char *fn_build_compiler(void)
{
#if defined(__clang__)
    return "clang " __clang_version__;
#elif defined(__GNUC__)
    return "gcc " __VERSION__;
#else
    return "unknown";
#endif
}

int fn_cpu_has_avx512(void)
{
    /* The instruction sets BLIS' own 'skx' kernels and fastnet's 64-byte
     * GEMM tiles need (libgcc's check includes the OS saving the wide
     * registers). */
#if defined(__GNUC__) && defined(__x86_64__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")
        && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
#else
    return 0;
#endif
}

int fn_build_multiversion(void)
{
    /* 1 when hot loops carry an AVX2+FMA clone picked at load time */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) \
    && defined(__linux__) && !defined(FN_NO_MULTIVERSION)
    return 1;
#else
    return 0;
#endif
}
