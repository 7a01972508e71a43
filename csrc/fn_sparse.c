/* Products of a sparse (CSR) first-layer input: the forward X W and the
 * weight gradient X^T dZ (fn_sparse.h says the orders and the layout). */
#ifndef FN_DTYPE

#include "fn_internal.h"

/* Entry i of an int32 or int64 index array (index_bits 32 or 64). */
FN_INLINE int64_t fn_csr_index(const void *a, int bits, fn_int i)
{
    return bits == 32 ? (int64_t)((const int32_t *)a)[i] : ((const int64_t *)a)[i];
}

fn_int fn_csr_grad_work_size(fn_int cols, fn_int nnz)
{
    return cols + 1 + nnz;
}

/* Rows per chunk of the forward, columns of X (rows of dW) per chunk of the
 * weight gradient: fixed, so the grid depends on the shape only. */
#define FN_CSR_ROWS 4
#define FN_CSR_COLS 32

#define FN_TEMPLATE "fn_sparse.c"
#include "fn_each_dtype.h"

#else /* template body */

#include "fn_real.h"
#include "fn_act.h"

typedef struct {
    const FN(fn_csr) *x;
    const int64_t *rows;
    fn_int n, n_out;
    const fn_real *w, *bias;
    int act;
    fn_real slope, *pre, *out;
} FN(csr_matmul_plan);

/* out_i = act(sum over row r's stored values v at column c of v W[c] + bias),
 * the terms in column order, one multiply-add each. */
FN_MULTIVERSION
static void FN(csr_matmul_chunk)(const void *ctx, fn_int chunk)
{
    const FN(csr_matmul_plan) *p = ctx;
    const FN(fn_csr) *x = p->x;
    const fn_int n_out = p->n_out;
    for (fn_int i = chunk * FN_CSR_ROWS; i < FN_MIN(p->n, (chunk + 1) * FN_CSR_ROWS); i++) {
        const int64_t r = p->rows ? p->rows[i] : i;
        fn_real *o = p->out + i * n_out;
        memset(o, 0, sizeof(fn_real) * (size_t)n_out);
        const int64_t end = fn_csr_index(x->indptr, x->index_bits, r + 1);
        for (int64_t q = fn_csr_index(x->indptr, x->index_bits, r); q < end; q++) {
            const fn_real v = x->values[q];
            const fn_real *wr = p->w + fn_csr_index(x->indices, x->index_bits, q) * n_out;
            FN_SIMD
            for (fn_int j = 0; j < n_out; j++) o[j] += v * wr[j];
        }
        if (p->bias)
            FN_SIMD
            for (fn_int j = 0; j < n_out; j++) o[j] += p->bias[j];
        if (p->pre)
            memcpy(p->pre + i * n_out, o, sizeof(fn_real) * (size_t)n_out);
        if (p->act != FN_ACT_NONE)
            for (fn_int j = 0; j < n_out; j++) o[j] = FN(fn_activate)(o[j], p->act, p->slope);
    }
}

/* Stored values of the batch's rows. */
static fn_int FN(csr_batch_nnz)(const FN(fn_csr) *x, const int64_t *rows, fn_int n)
{
    fn_int nnz = 0;
    for (fn_int i = 0; i < n; i++) {
        const int64_t r = rows ? rows[i] : i;
        nnz += fn_csr_index(x->indptr, x->index_bits, r + 1)
               - fn_csr_index(x->indptr, x->index_bits, r);
    }
    return nnz;
}

void FN(fn_csr_matmul_team)(fn_team *team, const FN(fn_csr) *x, const int64_t *rows, fn_int n,
                            const fn_real *w, fn_int n_out, const fn_real *bias, int act,
                            fn_real slope, fn_real *pre, fn_real *out)
{
    const FN(csr_matmul_plan) p = {x, rows, n, n_out, w, bias, act, slope, pre, out};
    const double nnz = n > 0 ? (double)FN(csr_batch_nnz)(x, rows, n) : 0;
    fn_team_for(team, FN_CEIL_DIV(n, FN_CSR_ROWS),
                (nnz * FN_NS_PER_FMA + (double)n * FN_NS_PER_ELEMENT) * (double)n_out,
                FN(csr_matmul_chunk), &p);
}

typedef struct {
    fn_int cols, n_out;
    const int64_t *colptr, *row_of;      /* the batch as CSC: batch row numbers */
    const fn_real *values, *dz;
    fn_real *dw;
} FN(csr_grad_plan);

/* dW[c] = sum over the batch's stored values v in column c, in batch row
 * order, of v dZ[i]; zeros for a column without any. */
FN_MULTIVERSION
static void FN(csr_grad_chunk)(const void *ctx, fn_int chunk)
{
    const FN(csr_grad_plan) *p = ctx;
    const fn_int n_out = p->n_out;
    const fn_int c1 = FN_MIN(p->cols, (chunk + 1) * FN_CSR_COLS);
    for (fn_int c = chunk * FN_CSR_COLS; c < c1; c++) {
        fn_real *d = p->dw + c * n_out;
        memset(d, 0, sizeof(fn_real) * (size_t)n_out);
        for (int64_t q = p->colptr[c]; q < p->colptr[c + 1]; q++) {
            const fn_real v = p->values[q];
            const fn_real *g = p->dz + p->row_of[q] * n_out;
            FN_SIMD
            for (fn_int j = 0; j < n_out; j++) d[j] += v * g[j];
        }
    }
}

void FN(fn_csr_weight_grad_team)(fn_team *team, const FN(fn_csr) *x, const int64_t *rows,
                                 fn_int n, const fn_real *dz, fn_int n_out, int64_t *work_index,
                                 fn_real *work_values, fn_real *dw)
{
    /* the batch transposed by a counting sort over its columns: within a
     * column its values stay in batch row order */
    const int bits = x->index_bits;
    const fn_int cols = x->cols;
    int64_t *colptr = work_index, *row_of = work_index + cols + 1;
    memset(colptr, 0, sizeof(int64_t) * (size_t)(cols + 1));
    for (fn_int i = 0; i < n; i++) {
        const int64_t r = rows ? rows[i] : i;
        const int64_t end = fn_csr_index(x->indptr, bits, r + 1);
        for (int64_t q = fn_csr_index(x->indptr, bits, r); q < end; q++)
            colptr[fn_csr_index(x->indices, bits, q) + 1]++;
    }
    for (fn_int c = 0; c < cols; c++) colptr[c + 1] += colptr[c];
    /* fill: colptr[c] walks from column c's start to its end (= c + 1's start) */
    for (fn_int i = 0; i < n; i++) {
        const int64_t r = rows ? rows[i] : i;
        const int64_t end = fn_csr_index(x->indptr, bits, r + 1);
        for (int64_t q = fn_csr_index(x->indptr, bits, r); q < end; q++) {
            const int64_t slot = colptr[fn_csr_index(x->indices, bits, q)]++;
            row_of[slot] = i;
            work_values[slot] = x->values[q];
        }
    }
    for (fn_int c = cols; c > 0; c--) colptr[c] = colptr[c - 1];
    colptr[0] = 0;
    const FN(csr_grad_plan) p = {cols, n_out, colptr, row_of, work_values, dz, dw};
    fn_team_for(team, FN_CEIL_DIV(cols, FN_CSR_COLS),
                ((double)colptr[cols] * FN_NS_PER_FMA + (double)cols * FN_NS_PER_ELEMENT)
                * (double)n_out, FN(csr_grad_chunk), &p);
}

#endif
