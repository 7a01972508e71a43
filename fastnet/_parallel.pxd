# The one thread policy and the BLAS table, shared by every native module.
from fastnet._native cimport fn_blas

cdef fn_blas blas_table() noexcept nogil
cdef int current_threads() noexcept nogil
cdef int threads_for_elements(double count) noexcept nogil
cdef int threads_for_gemm(double m, double n, double k) noexcept nogil
