/* A whole training step of an MLP in one call: gather the batch, forward
 * through Linear -> BatchNorm -> activation -> Dropout blocks, loss,
 * backward, gradient norm and optimizer update.  Every phase is a
 * team-aware kernel, so the step runs inside a single parallel region with
 * one barrier per phase, and Python is entered once per step. */
#ifndef FN_DTYPE

#include "fn_internal.h"

#define FN_DTYPE 32
#include "fn_mlp.c"
#undef FN_DTYPE
#define FN_DTYPE 64
#include "fn_mlp.c"
#undef FN_DTYPE

#else

#include "fn_real.h"

/* z = h W (+ b, + activation for layers without batch norm), then batch
 * norm, activation and dropout.  The last layer writes its outputs to
 * `top` (its own act buffer, or the caller's array in inference). */
static void FN(layer_forward)(const fn_blas *blas, const FN(fn_mlp) *net, int l,
                              const fn_real *h, fn_int n, int training, const fn_dropout *d,
                              fn_real *top)
{
    FN(fn_layer) *L = &net->layers[l];
    const int last = l == net->n_layers - 1;
    const int bn = net->batch_norm && !last;
    FN(fn_gemm_args) g = {
        .m = n, .n = L->fan_out, .k = L->fan_in,
        .a = h, .a_rs = L->fan_in, .a_cs = 1,
        .b = L->w, .b_rs = L->fan_out, .b_cs = 1,
        .c = last ? top : (bn ? L->xhat : L->act), .ldc = L->fan_out,
        .accumulate = 0, .bias = L->b, .act = (last || bn) ? FN_ACT_NONE : net->act,
        .pack = net->pack,
    };
    FN(fn_gemm_team)(blas, &g);
    if (last) return;
    const int dropout = training && net->dropout > 0;
    if (bn) {
        FN(fn_bn_forward_args) a = {
            .n = n, .f = L->fan_out, .x = L->xhat, .gamma = L->gamma, .beta = L->beta,
            .eps = net->bn_eps, .training = training,
            .mean = training ? L->mean : NULL, .var = training ? L->var : NULL,
            .running_mean = L->running_mean, .running_var = L->running_var,
            .momentum = net->bn_momentum, .xhat = training ? L->xhat : NULL,
            .act = net->act, .out = L->act,
            .dropout = dropout ? *d : (fn_dropout){0},
            .mask = L->mask, .dropped = L->out,
        };
        FN(fn_bn_forward_team)(&a);
    } else if (dropout) {
        FN(fn_dropout_team)(n, L->fan_out, L->act, L->fan_out, d, L->out, L->mask);
    }
}

/* Output of layer l as the next layer sees it. */
static const fn_real *FN(layer_output)(const FN(fn_mlp) *net, int l, int training)
{
    const FN(fn_layer) *L = &net->layers[l];
    return training && net->dropout > 0 ? L->out : L->act;
}

void FN(fn_mlp_train_step_team)(const fn_blas *blas, FN(fn_mlp) *net,
                                const FN(fn_batch) *batch, const FN(fn_optim) *opt,
                                double clip_norm, fn_result *res)
{
    const fn_int n = batch->n;
    const int nl = net->n_layers;
    const fn_int n_in = net->layers[0].fan_in;

    /* 1. the batch's rows, gathered once */
    const fn_real *x0 = batch->x;
    if (batch->index) {
        FN_OMP_FOR
        for (fn_int i = 0; i < n; i++)
            memcpy(net->input + i * n_in, batch->x + batch->index[i] * n_in,
                   sizeof(fn_real) * (size_t)n_in);
        x0 = net->input;
    }

    /* 2. forward */
    const fn_real *h = x0;
    for (int l = 0; l < nl; l++) {
        const fn_dropout d = {net->dropout, batch->seed, (uint32_t)l, batch->step};
        FN(layer_forward)(blas, net, l, h, n, 1, &d, net->layers[nl - 1].act);
        h = FN(layer_output)(net, l, 1);
    }

    /* 3. loss and its gradient w.r.t. the outputs */
    FN(fn_layer) *top = &net->layers[nl - 1];
    fn_real *dz = net->grad_a, *dh = net->grad_b;
    if (net->loss == FN_LOSS_MSE)
        FN(fn_mse_team)(n, top->fan_out, top->act, batch->targets, batch->weights,
                        batch->index, dz, net->scratch, res);
    else
        FN(fn_softmax_xent_team)(n, top->fan_out, top->act, batch->labels, batch->weights,
                                 batch->index, dz, net->scratch, res);

    /* 4. backward; dz holds the gradient w.r.t. layer l's pre-activation */
    for (int l = nl - 1; l >= 0; l--) {
        FN(fn_layer) *L = &net->layers[l];
        const fn_real *hin = l == 0 ? x0 : FN(layer_output)(net, l - 1, 1);
        if (l == nl - 1) /* hidden layers' bias gradients come with their dz below */
            FN(fn_act_backward_team)(n, L->fan_out, dz, NULL, FN_ACT_NONE, NULL, 0, dz, L->db);
        FN(fn_gemm_args) gw = {
            .m = L->fan_in, .n = L->fan_out, .k = n,
            .a = hin, .a_rs = 1, .a_cs = L->fan_in,
            .b = dz, .b_rs = L->fan_out, .b_cs = 1,
            .c = L->dw, .ldc = L->fan_out, .pack = net->pack,
        };
        FN(fn_gemm_team)(blas, &gw);
        if (l == 0) break;
        FN(fn_gemm_args) gx = {
            .m = n, .n = L->fan_in, .k = L->fan_out,
            .a = dz, .a_rs = L->fan_out, .a_cs = 1,
            .b = L->w, .b_rs = 1, .b_cs = L->fan_out,
            .c = dh, .ldc = L->fan_in, .pack = net->pack,
        };
        FN(fn_gemm_team)(blas, &gx);
        FN(fn_layer) *P = &net->layers[l - 1];
        const uint8_t *mask = net->dropout > 0 ? P->mask : NULL;
        if (net->batch_norm) {
            FN(fn_bn_backward_args) a = {
                .n = n, .f = P->fan_out, .dout = dh, .mask = mask, .rate = net->dropout,
                .act = net->act, .act_out = P->act, .xhat = P->xhat, .var = P->var,
                .eps = net->bn_eps, .gamma = P->gamma,
                .dx = dh, .dgamma = P->dgamma, .dbeta = P->dbeta,
            };
            FN(fn_bn_backward_team)(&a);
        } else {
            FN(fn_act_backward_team)(n, P->fan_out, dh, P->act, net->act, mask, net->dropout,
                                     dh, P->db);
        }
        fn_real *t = dz; dz = dh; dh = t;
    }

    /* 5. global gradient norm, clipping and the update */
    const double norm = sqrt(FN(fn_sumsq_team)(net->n_params, net->grads, net->scratch));
    if (opt) {
        double scale = 1.0;
        if (clip_norm > 0) {
            const double coef = clip_norm / (norm + 1e-6);
            if (coef < 1.0) scale = coef;
        }
        FN(fn_optim_update_team)(opt, net->n_params, net->params, net->grads, scale);
    }
    FN_OMP_SINGLE
    res->grad_norm = norm;
}

void FN(fn_mlp_forward_team)(const fn_blas *blas, FN(fn_mlp) *net, const fn_real *x,
                             fn_int n, fn_real *out)
{
    const fn_real *h = x;
    for (int l = 0; l < net->n_layers; l++) {
        FN(layer_forward)(blas, net, l, h, n, 0, NULL, out);
        h = FN(layer_output)(net, l, 0);
    }
}

#endif
