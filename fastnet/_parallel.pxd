# The one thread policy, the team's sessions and the BLAS table, shared by
# every native module.
from fastnet._native cimport fn_blas, fn_team

cdef fn_blas blas_table() noexcept nogil
cdef int current_threads() noexcept nogil
cdef fn_team *team_begin(int threads, double work_ns) noexcept nogil
cdef void team_end(fn_team *team) noexcept nogil
