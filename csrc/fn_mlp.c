/* A whole training step of an MLP in one call: gather the batch, forward
 * through Linear -> BatchNorm -> activation -> Dropout blocks, loss,
 * backward, gradient norm and optimizer update.  Every part is a
 * team-aware kernel on the one team session of the step, and Python is
 * entered once per step (or once per block of steps: fn_mlp_train_steps). */
#ifndef FN_DTYPE

#include "fn_internal.h"

/* One layer's share of the flat parameters and buffers, offsets relative
 * to the layer's start; returns its parameter count. */
static fn_int fn_layer_layout(fn_int fan_in, fn_int fan_out, int bn, int ln,
                              fn_layer_offsets *o, fn_int *n_buffers)
{
    fn_int p = fan_in * fan_out;
    o->w = 0;
    o->b = o->gamma = o->beta = o->running_mean = o->running_var = -1;
    *n_buffers = 0;
    if (ln) {         /* no bias: beta takes its role, as under batch norm */
        o->gamma = p; p += fan_out;
        o->beta = p; p += fan_out;
    } else if (bn) {
        o->gamma = p; p += fan_out;
        o->beta = p; p += fan_out;
        o->running_mean = 0;
        o->running_var = fan_out;
        *n_buffers = 2 * fan_out;
    } else {
        o->b = p; p += fan_out;
    }
    return p;
}

static int fn_has_bn(const fn_mlp_config *cfg, int l, int n_layers)
{
    return cfg->batch_norm && l < n_layers - 1;
}

static int fn_has_ln(const fn_mlp_config *cfg, int l, int n_layers)
{
    return cfg->layer_norm && l < n_layers - 1;
}

fn_int fn_mlp_layout(int n_layers, const fn_int *sizes, int batch_norm, int layer_norm,
                     fn_layer_offsets *offsets, fn_int *n_buffers)
{
    fn_int p = 0, q = 0;
    for (int l = 0; l < n_layers; l++) {
        fn_layer_offsets *o = &offsets[l];
        fn_int nb;
        const fn_int np = fn_layer_layout(sizes[l], sizes[l + 1],
                                          batch_norm && l < n_layers - 1,
                                          layer_norm && l < n_layers - 1, o, &nb);
        o->w += p;
        if (o->b >= 0) o->b += p;
        if (o->gamma >= 0) { o->gamma += p; o->beta += p; }
        if (o->running_mean >= 0) { o->running_mean += q; o->running_var += q; }
        p += np;
        q += nb;
    }
    *n_buffers = q;
    return p;
}

/* The workspace is carved layer by layer by one walk that both
 * fn_mlp_workspace_size and fn_mlp_bind run, so they never disagree.
 * Sub-buffers start on 64-byte boundaries. */
typedef struct {
    int bits;
    fn_int used, mask_used, widest, pack, bn_work;
} fn_walk;

typedef struct {
    fn_int xhat, pre, act, out, mean, var, mask, rstd;   /* offsets; -1 if absent */
} fn_layer_ws;

typedef struct {
    fn_int input, grad_a, grad_b, pack;
    fn_int workspace, masks, scratch;         /* totals */
} fn_ws_totals;

static fn_int fn_take(fn_int *used, fn_int count, int bits)
{
    const fn_int per_line = 512 / bits, at = *used;
    *used += FN_CEIL_DIV(count, per_line) * per_line;
    return at;
}

static fn_layer_ws fn_walk_layer(fn_walk *w, int l, int n_layers, const fn_int *sizes,
                                 const fn_mlp_config *cfg, fn_int max_batch)
{
    const fn_int fan_in = sizes[l], fan_out = sizes[l + 1], rows = max_batch * fan_out;
    const int bn = fn_has_bn(cfg, l, n_layers), ln = fn_has_ln(cfg, l, n_layers);
    const int drop = cfg->dropout > 0 && l < n_layers - 1;
    fn_layer_ws o = {-1, -1, -1, -1, -1, -1, -1, -1};
    /* layer norm: pre holds x W + b, xhat the normalised rows */
    if (bn || ln) o.xhat = fn_take(&w->used, rows, w->bits);
    if (ln) {
        o.pre = fn_take(&w->used, rows, w->bits);
        o.rstd = fn_take(&w->used, max_batch, w->bits);
    }
    /* batch and layer norm rebuild the activation's input from xhat instead */
    if (!bn && !ln && l < n_layers - 1 && FN_ACT_NEEDS_PRE(cfg->act))
        o.pre = fn_take(&w->used, rows, w->bits);
    o.act = fn_take(&w->used, rows, w->bits);
    o.out = drop ? fn_take(&w->used, rows, w->bits) : o.act;
    if (drop) o.mask = fn_take(&w->mask_used, rows, 8);
    if (bn) {
        o.mean = fn_take(&w->used, fan_out, w->bits);
        o.var = fn_take(&w->used, fan_out, w->bits);
        w->bn_work = FN_MAX(w->bn_work, fn_bn_work_size(max_batch, fan_out, w->bits));
    }
    w->widest = FN_MAX(w->widest, fan_out);
    if (l > 0) w->widest = FN_MAX(w->widest, fan_in);
    w->pack = FN_MAX(w->pack, fn_gemm_pack_size(fan_in, fan_out, w->bits));    /* forward */
    w->pack = FN_MAX(w->pack, fn_gemm_pack_size(max_batch, fan_out, w->bits)); /* dW */
    w->pack = FN_MAX(w->pack, fn_gemm_pack_size(fan_out, fan_in, w->bits));    /* dx */
    return o;
}

static fn_ws_totals fn_walk_finish(fn_walk *w, const fn_int *sizes, fn_int max_batch,
                                   fn_int n_params)
{
    fn_ws_totals t;
    t.input = fn_take(&w->used, max_batch * sizes[0], w->bits);
    t.grad_a = fn_take(&w->used, max_batch * w->widest, w->bits);
    t.grad_b = fn_take(&w->used, max_batch * w->widest, w->bits);
    t.pack = fn_take(&w->used, w->pack, w->bits);
    t.workspace = w->used;
    t.masks = FN_MAX(w->mask_used, 1);
    /* the loss, the gradient norm and batch norm run one after another:
     * they share the scratch */
    t.scratch = FN_MAX(fn_reduce_scratch_size(max_batch, n_params), w->bn_work);
    return t;
}

void fn_mlp_workspace_size(int n_layers, const fn_int *sizes, const fn_mlp_config *cfg,
                           fn_int max_batch, fn_int n_params, int dtype_bits,
                           fn_int *workspace, fn_int *mask_bytes, fn_int *scratch)
{
    fn_walk w = {dtype_bits, 0, 0, 1, 1, 0};
    for (int l = 0; l < n_layers; l++) fn_walk_layer(&w, l, n_layers, sizes, cfg, max_batch);
    const fn_ws_totals t = fn_walk_finish(&w, sizes, max_batch, n_params);
    *workspace = t.workspace;
    *mask_bytes = t.masks;
    *scratch = t.scratch;
}

#define FN_TEMPLATE "fn_mlp.c"
#include "fn_each_dtype.h"

#else

#include "fn_real.h"

void FN(fn_mlp_bind)(FN(fn_mlp) *net, FN(fn_layer) *layers, int n_layers, const fn_int *sizes,
                     const fn_mlp_config *cfg, fn_int max_batch, fn_real *params,
                     fn_real *grads, fn_real *buffers, fn_real *workspace, uint8_t *masks,
                     double *scratch)
{
#define FN_AT(base, off) ((off) >= 0 ? (base) + (off) : NULL)
    fn_walk w = {FN_DTYPE, 0, 0, 1, 1, 0};
    fn_int p = 0, q = 0;
    for (int l = 0; l < n_layers; l++) {
        FN(fn_layer) *L = &layers[l];
        fn_layer_offsets o;
        fn_int nb;
        const fn_int np = fn_layer_layout(sizes[l], sizes[l + 1], fn_has_bn(cfg, l, n_layers),
                                          fn_has_ln(cfg, l, n_layers), &o, &nb);
        const fn_layer_ws lw = fn_walk_layer(&w, l, n_layers, sizes, cfg, max_batch);
        memset(L, 0, sizeof *L);
        L->fan_in = sizes[l];
        L->fan_out = sizes[l + 1];
        L->w = params + p + o.w;
        L->dw = grads + p + o.w;
        L->b = FN_AT(params + p, o.b);
        L->db = FN_AT(grads + p, o.b);
        L->gamma = FN_AT(params + p, o.gamma);
        L->dgamma = FN_AT(grads + p, o.gamma);
        L->beta = FN_AT(params + p, o.beta);
        L->dbeta = FN_AT(grads + p, o.beta);
        L->running_mean = FN_AT(buffers + q, o.running_mean);
        L->running_var = FN_AT(buffers + q, o.running_var);
        L->xhat = FN_AT(workspace, lw.xhat);
        L->pre = FN_AT(workspace, lw.pre);
        L->act = FN_AT(workspace, lw.act);
        L->out = FN_AT(workspace, lw.out);
        L->mean = FN_AT(workspace, lw.mean);
        L->var = FN_AT(workspace, lw.var);
        L->rstd = FN_AT(workspace, lw.rstd);
        L->mask = lw.mask >= 0 ? masks + lw.mask : NULL;
        p += np;
        q += nb;
    }
#undef FN_AT
    const fn_ws_totals t = fn_walk_finish(&w, sizes, max_batch, p);
    net->n_layers = n_layers;
    net->layers = layers;
    net->act = cfg->act;
    net->act_slope = cfg->act_slope;
    net->batch_norm = cfg->batch_norm;
    net->layer_norm = cfg->layer_norm;
    net->dropout = cfg->dropout;
    net->bn_eps = cfg->bn_eps;
    net->bn_momentum = cfg->bn_momentum;
    net->freeze_bn_stats = 0;
    net->loss = cfg->loss;
    net->huber_delta = cfg->huber_delta;
    net->n_params = p;
    net->params = params;
    net->grads = grads;
    net->input = workspace + t.input;
    net->grad_a = workspace + t.grad_a;
    net->grad_b = workspace + t.grad_b;
    net->pack = workspace + t.pack;
    net->scratch = scratch;
    net->reduce = NULL;
    net->reduce_ctx = NULL;
    net->bn_sums = NULL;
}

/* Synchronised batch norm: sum `count` doubles over all processes (one
 * call, on the caller's thread), then divide them by divide_by (> 0). */
static void FN(sum_over_processes)(const FN(fn_mlp) *net, double *v, fn_int count,
                                   fn_int divide_by)
{
    net->reduce(net->reduce_ctx, v, count);
    if (divide_by > 0)
        for (fn_int i = 0; i < count; i++) v[i] /= (double)divide_by;
}

/* z = h W (+ b, + activation for layers without batch norm), then batch
 * norm, activation and dropout.  The last layer writes its outputs to
 * `top` (its own act buffer, or the caller's array in inference).  With
 * net->reduce set, training batch norm uses the statistics of the whole
 * batch of stat_n rows split over processes (two-pass: means, then
 * variances about them, as on one process). */
static void FN(layer_forward)(fn_team *team, const fn_blas *blas, const FN(fn_mlp) *net, int l,
                              const fn_real *h, const FN(fn_csr) *csr, const int64_t *rows,
                              fn_int n, int training, const fn_dropout *d, fn_real *top,
                              fn_int stat_n)
{
    FN(fn_layer) *L = &net->layers[l];
    const int last = l == net->n_layers - 1;
    const int bn = net->batch_norm && !last, ln = net->layer_norm && !last;
    FN(fn_gemm_args) g = {
        .m = n, .n = L->fan_out, .k = L->fan_in,
        .a = h, .a_rs = L->fan_in, .a_cs = 1,
        .b = L->w, .b_rs = L->fan_out, .b_cs = 1,
        .c = last ? top : (bn ? L->xhat : ln ? L->pre : L->act), .ldc = L->fan_out,
        .accumulate = 0, .bias = L->b, .act = (last || bn || ln) ? FN_ACT_NONE : net->act,
        .pack = net->pack, .slope = net->act_slope,
        .pre = (last || bn || ln || !training) ? NULL : L->pre,   /* for the backward */
    };
    if (l == 0 && csr)       /* sparse input: rows `rows` of csr (NULL: its rows 0..n-1) */
        FN(fn_csr_matmul_team)(team, csr, rows, n, L->w, L->fan_out, L->b, g.act, g.slope,
                               g.pre, g.c);
    else
        FN(fn_gemm_team)(team, blas, &g);
    if (last) return;
    const int dropout = training && net->dropout > 0;
    if (ln) {
        const FN(fn_ln_forward_args) a = {
            .n = n, .f = L->fan_out, .x = L->pre, .gamma = L->gamma, .beta = L->beta,
            .eps = net->bn_eps, .act = net->act, .slope = net->act_slope,
            .xhat = training ? L->xhat : NULL, .rstd = training ? L->rstd : NULL,
            .out = L->act,
        };
        FN(fn_ln_forward_team)(team, &a);
        if (dropout)
            FN(fn_dropout_team)(team, n, L->fan_out, L->act, L->fan_out, d, L->out, L->mask);
    } else if (bn) {
        FN(fn_bn_forward_args) a = {
            .n = n, .f = L->fan_out, .x = L->xhat, .gamma = L->gamma, .beta = L->beta,
            .eps = net->bn_eps, .training = training,
            .mean = training ? L->mean : NULL, .var = training ? L->var : NULL,
            .running_mean = net->freeze_bn_stats && training ? NULL : L->running_mean,
            .running_var = net->freeze_bn_stats && training ? NULL : L->running_var,
            .momentum = net->bn_momentum, .xhat = training ? L->xhat : NULL,
            .act = net->act, .slope = net->act_slope, .out = L->act,
            .dropout = dropout ? *d : (fn_dropout){0},
            .mask = L->mask, .dropped = L->out, .work = net->scratch,
        };
        if (training && net->reduce) {
            double *s = net->bn_sums;
            FN(fn_bn_sums_team)(team, n, L->fan_out, L->xhat, NULL, s, net->scratch);
            FN(sum_over_processes)(net, s, L->fan_out, stat_n);
            FN(fn_bn_sums_team)(team, n, L->fan_out, L->xhat, s, s + L->fan_out, net->scratch);
            FN(sum_over_processes)(net, s + L->fan_out, L->fan_out, stat_n);
            a.stats = s;
            a.stat_n = stat_n;
        }
        FN(fn_bn_forward_team)(team, &a);
    } else if (dropout) {
        FN(fn_dropout_team)(team, n, L->fan_out, L->act, L->fan_out, d, L->out, L->mask);
    }
}

/* Output of layer l as the next layer sees it. */
static const fn_real *FN(layer_output)(const FN(fn_mlp) *net, int l, int training)
{
    const FN(fn_layer) *L = &net->layers[l];
    return training && net->dropout > 0 ? L->out : L->act;
}

/* The batch's rows, gathered (a phase of FN_GATHER_ROWS rows a chunk). */
#define FN_GATHER_ROWS 16
typedef struct {
    const FN(fn_mlp) *net;
    const FN(fn_batch) *batch;
} FN(gather_plan);

static void FN(gather_chunk)(const void *ctx, fn_int c)
{
    const FN(gather_plan) *s = ctx;
    const fn_int n_in = s->net->layers[0].fan_in;
    const size_t bytes = sizeof(fn_real) * (size_t)n_in;
    for (fn_int i = c * FN_GATHER_ROWS; i < FN_MIN(s->batch->n, (c + 1) * FN_GATHER_ROWS); i++)
        memcpy(s->net->input + i * n_in, s->batch->x + s->batch->index[i] * n_in, bytes);
}

void FN(fn_mlp_train_step_team)(fn_team *team, const fn_blas *blas, FN(fn_mlp) *net,
                                const FN(fn_batch) *batch, const FN(fn_optim) *opt,
                                double clip_norm, fn_result *res)
{
    const fn_int n = batch->n;
    const int nl = net->n_layers;
    const fn_int n_in = net->layers[0].fan_in;
    const fn_int stat_n = batch->total_rows > 0 ? batch->total_rows : n;

    /* 1. the batch's rows, gathered once */
    const fn_real *x0 = batch->x;
    if (batch->index && !batch->csr) {
        const FN(gather_plan) s = {net, batch};
        fn_team_for(team, FN_CEIL_DIV(n, FN_GATHER_ROWS), (double)n * n_in * FN_NS_PER_ELEMENT,
                    FN(gather_chunk), &s);
        x0 = net->input;
    }

    /* 2. forward */
    const fn_real *h = x0;
    for (int l = 0; l < nl; l++) {
        const fn_dropout d = {net->dropout, batch->seed, (uint32_t)l, batch->step,
                             batch->row0};
        FN(layer_forward)(team, blas, net, l, h, batch->csr, batch->index, n, 1, &d,
                          net->layers[nl - 1].act, stat_n);
        h = FN(layer_output)(net, l, 1);
    }

    /* 3. loss and its gradient w.r.t. the outputs */
    FN(fn_layer) *top = &net->layers[nl - 1];
    fn_real *dz = net->grad_a, *dh = net->grad_b;
    if (net->loss != FN_LOSS_CROSS_ENTROPY)
        FN(fn_target_loss_team)(team, net->loss, net->huber_delta, n, top->fan_out, top->act,
                                batch->targets, batch->weights, batch->index, dz,
                                batch->total_weight, net->scratch, res);
    else
        FN(fn_softmax_xent_team)(team, n, top->fan_out, top->act, batch->labels, batch->weights,
                                 batch->index, dz, batch->total_weight, net->scratch, res);

    /* 4. backward; dz holds the gradient w.r.t. layer l's pre-activation */
    for (int l = nl - 1; l >= 0; l--) {
        FN(fn_layer) *L = &net->layers[l];
        const fn_real *hin = l == 0 ? x0 : FN(layer_output)(net, l - 1, 1);
        if (l == nl - 1) /* hidden layers' bias gradients come with their dz below */
            FN(fn_act_backward_team)(team, n, L->fan_out, dz, NULL, NULL, FN_ACT_NONE, 0, NULL,
                                     0, dz, L->db);
        FN(fn_gemm_args) gw = {
            .m = L->fan_in, .n = L->fan_out, .k = n,
            .a = hin, .a_rs = 1, .a_cs = L->fan_in,
            .b = dz, .b_rs = L->fan_out, .b_cs = 1,
            .c = L->dw, .ldc = L->fan_out, .pack = net->pack,
        };
        if (l == 0 && batch->csr)
            FN(fn_csr_weight_grad_team)(team, batch->csr, batch->index, n, dz, L->fan_out,
                                        batch->csr_work_index, batch->csr_work_values, L->dw);
        else
            FN(fn_gemm_team)(team, blas, &gw);
        if (l == 0) break;
        FN(fn_gemm_args) gx = {
            .m = n, .n = L->fan_in, .k = L->fan_out,
            .a = dz, .a_rs = L->fan_out, .a_cs = 1,
            .b = L->w, .b_rs = 1, .b_cs = L->fan_out,
            .c = dh, .ldc = L->fan_in, .pack = net->pack,
        };
        FN(fn_gemm_team)(team, blas, &gx);
        FN(fn_layer) *P = &net->layers[l - 1];
        const uint8_t *mask = net->dropout > 0 ? P->mask : NULL;
        if (net->layer_norm) {
            const FN(fn_ln_backward_args) a = {
                .n = n, .f = P->fan_out, .dout = dh, .mask = mask, .rate = net->dropout,
                .act = net->act, .act_out = P->act, .slope = net->act_slope,
                .xhat = P->xhat, .rstd = P->rstd, .gamma = P->gamma, .beta = P->beta,
                .dx = dh, .dgamma = P->dgamma, .dbeta = P->dbeta,
            };
            FN(fn_ln_backward_team)(team, &a);
        } else if (net->batch_norm) {
            FN(fn_bn_backward_args) a = {
                .n = n, .f = P->fan_out, .dout = dh, .mask = mask, .rate = net->dropout,
                .act = net->act, .act_out = P->act, .slope = net->act_slope,
                .beta = P->beta, .xhat = P->xhat, .var = P->var,
                .eps = net->bn_eps, .gamma = P->gamma,
                .dx = dh, .dgamma = P->dgamma, .dbeta = P->dbeta, .work = net->scratch,
            };
            if (net->reduce) {   /* synchronised: sum the two reductions over processes */
                a.phase = 1;
                a.sums = net->bn_sums;
                FN(fn_bn_backward_team)(team, &a);
                FN(sum_over_processes)(net, net->bn_sums, 2 * P->fan_out, 0);
                a.phase = 2;
                a.stat_n = stat_n;
            }
            FN(fn_bn_backward_team)(team, &a);
        } else {
            FN(fn_act_backward_team)(team, n, P->fan_out, dh, P->act, P->pre, net->act,
                                     net->act_slope, mask, net->dropout, dh, P->db);
        }
        fn_real *t = dz; dz = dh; dh = t;
    }

    /* 5. global gradient norm, clipping and the update */
    FN(fn_mlp_apply_update_team)(team, net, opt, clip_norm, res);
}

void FN(fn_mlp_apply_update_team)(fn_team *team, FN(fn_mlp) *net, const FN(fn_optim) *opt,
                                  double clip_norm, fn_result *res)
{
    double norm;
    if (opt && !(clip_norm > 0)) {
        norm = sqrt(FN(fn_optim_update_sumsq_team)(team, opt, net->n_params, net->params,
                                                  net->grads, net->scratch));
    } else {
        norm = sqrt(FN(fn_sumsq_team)(team, net->n_params, net->grads, net->scratch));
        if (opt) {
            double scale = 1.0;
            const double coef = clip_norm / (norm + 1e-6);
            if (coef < 1.0) scale = coef;
            FN(fn_optim_update_team)(team, opt, net->n_params, net->params, net->grads, scale);
        }
    }
    res->grad_norm = norm;
}

static void FN(forward)(fn_team *team, const fn_blas *blas, FN(fn_mlp) *net, const fn_real *x,
                        const FN(fn_csr) *csr, fn_int n, fn_real *out)
{
    const fn_real *h = x;
    for (int l = 0; l < net->n_layers; l++) {
        FN(layer_forward)(team, blas, net, l, h, csr, NULL, n, 0, NULL, out, 0);
        h = FN(layer_output)(net, l, 0);
    }
}

void FN(fn_mlp_forward_team)(fn_team *team, const fn_blas *blas, FN(fn_mlp) *net,
                             const fn_real *x, fn_int n, fn_real *out)
{
    FN(forward)(team, blas, net, x, NULL, n, out);
}

void FN(fn_mlp_forward_csr_team)(fn_team *team, const fn_blas *blas, FN(fn_mlp) *net,
                                 const FN(fn_csr) *x, fn_real *out)
{
    FN(forward)(team, blas, net, NULL, x, x->rows, out);
}

void FN(fn_mlp_layer_stats)(const FN(fn_mlp) *net, fn_int n, double *sumsq, int64_t *dead,
                            uint8_t *alive)
{
    for (int l = 0; l < net->n_layers; l++) {
        const FN(fn_layer) *L = &net->layers[l];
        sumsq[l] = FN(fn_sumsq_team)(NULL, L->fan_in * L->fan_out, L->dw, net->scratch);
        if (l == net->n_layers - 1) break;
        const fn_int f = L->fan_out;
        memset(alive, 0, (size_t)f);
        for (fn_int i = 0; i < n; i++) {
            const fn_real *row = L->act + i * f;
            FN_SIMD
            for (fn_int j = 0; j < f; j++) alive[j] |= row[j] != 0;   /* branch-free */
        }
        int64_t alive_count = 0;
        for (fn_int j = 0; j < f; j++) alive_count += alive[j];
        dead[l] = f - alive_count;
    }
}

double FN(fn_mlp_work_ns)(const FN(fn_mlp) *net, fn_int n, int training)
{
    double fma = 0, elements = 0;
    for (int l = 0; l < net->n_layers; l++) {
        const FN(fn_layer) *L = &net->layers[l];
        fma += (double)L->fan_in * L->fan_out;
        elements += (double)L->fan_out;
    }
    /* training: two more products per layer, batch norm, dropout and the
     * backward's passes, and the update of every parameter */
    if (training)
        return (3 * fma * FN_NS_PER_FMA + 12 * elements * FN_NS_PER_ELEMENT) * (double)n
               + 4 * (double)net->n_params * FN_NS_PER_ELEMENT;
    return (fma * FN_NS_PER_FMA + 3 * elements * FN_NS_PER_ELEMENT) * (double)n;
}

#endif
