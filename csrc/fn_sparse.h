/* Sparse (CSR) input of an MLP's first layer (fn_sparse.c); included by
 * fn_api.h once per dtype.
 *
 * A CSR matrix of `rows` x `cols` stores row r's values at positions
 * [indptr[r], indptr[r + 1]) of `indices` (their columns, ascending within a
 * row) and `values`; indptr[0] need not be 0, so rows s..s+n of a larger
 * matrix are described by moving indptr by s.  indptr and indices are both
 * int32 or both int64 (scipy.sparse picks either), as index_bits says.
 *
 * The products sum each output element over the stored values in a fixed
 * order with one multiply-add a term: row i of X W over its columns in
 * ascending order, row c of X^T dZ over the batch's rows in batch order
 * (the dense products' orders, zeros left out: the results agree with the
 * dense path within rounding).  Work is split over output rows by a grid
 * fixed by the shape, so any thread count gives the same bits.  Callers
 * pass every workspace. */

#ifndef FN_SPARSE_H
#define FN_SPARSE_H
/* Entries of work_index fn_csr_weight_grad_team needs for a matrix of `cols`
 * columns and a batch of `nnz` stored values. */
fn_int fn_csr_grad_work_size(fn_int cols, fn_int nnz);
#endif

struct FN(fn_csr) {
    fn_int rows, cols;
    int index_bits;                  /* 32: int32_t indptr and indices; 64: int64_t */
    const void *indptr;              /* rows + 1 offsets into indices and values */
    const void *indices;
    const fn_real *values;
};
typedef struct FN(fn_csr) FN(fn_csr);

/* out (n x n_out, row-major) = act(X[r] W + bias) for r = rows[i] (rows NULL:
 * r = i), W x->cols x n_out row-major; bias (n_out, NULL: none), act (FN_ACT_*),
 * its slope and pre (n x n_out: the values before the activation, NULL: not
 * kept) as in fn_gemm_team. */
void FN(fn_csr_matmul_team)(fn_team *team, const FN(fn_csr) *x, const int64_t *rows, fn_int n,
                            const fn_real *w, fn_int n_out, const fn_real *bias, int act,
                            fn_real slope, fn_real *pre, fn_real *out);

/* dW (x->cols x n_out) = X_b^T dZ for the batch X_b of rows rows[0:n] of x
 * (rows NULL: 0..n-1) and dZ n x n_out row-major; rows of dW whose column
 * holds no stored value in the batch are zeros.  work_index holds
 * fn_csr_grad_work_size(x->cols, nnz) and work_values nnz entries, nnz being
 * the batch's stored values (at most max_row_nnz * n): the batch transposed
 * once, on the calling thread. */
void FN(fn_csr_weight_grad_team)(fn_team *team, const FN(fn_csr) *x, const int64_t *rows,
                                 fn_int n, const fn_real *dz, fn_int n_out, int64_t *work_index,
                                 fn_real *work_values, fn_real *dw);
