# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
# cython: cdivision=True
"""The training engine: a whole MLP step in one native call.

An Engine binds a model's flat parameter, gradient and buffer arrays, plus
workspaces sized for one batch (allocated once, here), to the C network
struct of csrc/fn_mlp.c.  `step()` then enters native code once per
mini-batch: gather rows, forward, loss, backward, gradient norm, clipping
and optimizer update run in one session of fastnet's thread team (none for
one thread or for work below the cost of a partner) without the GIL.
"""
import numpy as np

from cpython.mem cimport PyMem_Malloc, PyMem_Free
from cython cimport floating
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int64_t
from libc.math cimport isfinite
from libc.string cimport memset

from fastnet._native cimport *
from fastnet._parallel cimport blas_table, current_threads, team_begin, team_end

ACTIVATIONS = {"relu": FN_ACT_RELU, "tanh": FN_ACT_TANH, "sigmoid": FN_ACT_SIGMOID}
LOSSES = {"cross_entropy": FN_LOSS_CROSS_ENTROPY, "mse": FN_LOSS_MSE}
OPTIMIZERS = {"sgd": FN_OPT_SGD, "adam": FN_OPT_ADAM, "adamw": FN_OPT_ADAMW}


_INT64_LIMIT = 2**62     # array sizes the layout arithmetic (fn_int) computes safely


def layout(sizes, bint batch_norm):
    """Offsets of each layer's arrays in the flat parameter and buffer arrays.

    Returns (layers, n_params, n_buffers); layers[l] is a dict with keys w, b,
    gamma, beta, running_mean, running_var (absent arrays omitted).

    Raises
    ------
    ValueError
        Fewer than 2 sizes, a size that is not an int >= 1, or a model whose
        parameter count would overflow the native (64-bit) index arithmetic.
    """
    sizes = _checked_sizes(sizes)
    cdef int n_layers = len(sizes) - 1
    cdef fn_int[::1] sz = np.asarray(sizes, dtype=np.intp)
    offsets = np.empty(n_layers * 6, dtype=np.intp)
    cdef fn_int[::1] off = offsets
    cdef fn_int n_buffers = 0
    cdef fn_int n_params = fn_mlp_layout(n_layers, &sz[0], batch_norm,
                                         <fn_layer_offsets *>&off[0], &n_buffers)
    names = ("w", "b", "gamma", "beta", "running_mean", "running_var")
    layers = []
    for l in range(n_layers):
        layers.append({name: int(offsets[6 * l + i]) for i, name in enumerate(names)
                       if offsets[6 * l + i] >= 0})
    return layers, int(n_params), int(n_buffers)


def _checked_sizes(sizes):
    """`sizes` as a tuple of ints >= 1 (at least 2) whose layout fits in fn_int."""
    sizes = tuple(sizes)
    if len(sizes) < 2 or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool)
                                 and s >= 1 for s in sizes):
        raise ValueError(f"layer sizes must be at least 2 ints >= 1, got {list(sizes)}")
    sizes = tuple(int(s) for s in sizes)
    # the exact count in Python ints: fn_mlp_layout's 64-bit arithmetic would wrap
    exact = sum(a * b + 2 * b for a, b in zip(sizes, sizes[1:]))
    if exact > _INT64_LIMIT:
        raise ValueError(f"layer sizes {list(sizes)} need {exact} parameters, more than "
                         f"fastnet can index (2**62)")
    return sizes


def _check_array(arr, name, shape, dtype, writeable=False):
    """ValueError unless `arr` is an aligned C-contiguous ndarray of `shape` and `dtype`
    (and writeable): the native code trusts these sizes."""
    ok = (isinstance(arr, np.ndarray) and arr.dtype == dtype and arr.shape == shape
          and arr.flags.c_contiguous and arr.flags.aligned
          and (arr.flags.writeable or not writeable))
    if not ok:
        got = (f"{'a read-only ' if not arr.flags.writeable else ''}"
               f"{'' if arr.flags.c_contiguous else 'non-contiguous '}{arr.dtype} array of "
               f"shape {arr.shape}" if isinstance(arr, np.ndarray) else type(arr).__name__)
        raise ValueError(f"Engine: {name} must be a{' writeable' if writeable else 'n'} "
                         f"aligned C-contiguous {np.dtype(dtype).name} array of shape "
                         f"{shape}, got {got}")


cdef inline floating *_data(floating[::1] v) noexcept:
    return NULL if v.shape[0] == 0 else &v[0]


cdef void _bind(Engine e, floating[::1] params, floating[::1] grads, floating[::1] buffers,
                floating[::1] workspace, uint8_t[::1] masks, double[::1] scratch,
                fn_int[::1] sizes, fn_mlp_config *cfg):
    if floating is float:
        fn_mlp_bind_f32(&e.n32, e.l32, e.n_layers, &sizes[0], cfg, e.max_batch,
                        _data(params), _data(grads), _data(buffers), _data(workspace),
                        &masks[0], &scratch[0])
    else:
        fn_mlp_bind_f64(&e.n64, e.l64, e.n_layers, &sizes[0], cfg, e.max_batch,
                        _data(params), _data(grads), _data(buffers), _data(workspace),
                        &masks[0], &scratch[0])


cdef class Engine:
    """Native state of one MLP for batches of at most `max_batch` rows."""

    cdef fn_mlp_f32 n32
    cdef fn_mlp_f64 n64
    cdef fn_layer_f32 *l32
    cdef fn_layer_f64 *l64
    cdef fn_batch_f32 b32
    cdef fn_batch_f64 b64
    cdef fn_optim_f32 o32
    cdef fn_optim_f64 o64
    cdef fn_csr_f32 c32         # set_csr_data's rows
    cdef fn_csr_f64 c64
    cdef readonly int bits, n_layers
    cdef readonly Py_ssize_t max_batch, n_params
    cdef readonly tuple sizes
    cdef readonly Py_ssize_t n_in, n_out
    cdef readonly int loss
    cdef readonly object workspace_bytes
    cdef bint _has_data, _has_opt, _has_order
    cdef Py_ssize_t _n_rows
    cdef object _keep, _data_refs, _order, _opt_refs, _alive
    cdef object _reducer, _reduce_error
    cdef readonly object bn_sums
    cdef public int64_t opt_step
    cdef public int threads        # 0: fastnet's thread count
    # running sums of the current epoch
    cdef public double loss_sum, grad_norm_sum, last_grad_norm
    cdef public Py_ssize_t correct, rows, steps
    cdef readonly Py_ssize_t last_rows     # rows of the last step's batch

    def __cinit__(self, sizes, params, grads, buffers, int act, bint batch_norm,
                  double dropout, double bn_eps, double bn_momentum, int loss,
                  Py_ssize_t max_batch):
        self.l32 = NULL
        self.l64 = NULL
        # Everything the C side indexes is checked against the layout computed
        # here: a wrong size would be a silent out-of-bounds access.
        sizes = _checked_sizes(sizes)
        _, n_params, n_buffers = layout(sizes, batch_norm)
        if not isinstance(params, np.ndarray) or params.dtype not in (np.float32, np.float64):
            raise ValueError(f"Engine: params must be a float32 or float64 array, got "
                             f"{getattr(params, 'dtype', type(params).__name__)}")
        _check_array(params, "params", (n_params,), params.dtype, writeable=True)
        _check_array(grads, "grads", (n_params,), params.dtype, writeable=True)
        _check_array(buffers, "buffers", (n_buffers,), params.dtype, writeable=True)
        if act not in ACTIVATIONS.values():
            raise ValueError(f"Engine: unknown activation code {act}")
        if loss not in LOSSES.values():
            raise ValueError(f"Engine: unknown loss code {loss}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"Engine: dropout must be in [0, 1), got {dropout}")
        if not 0.0 <= bn_eps < float("inf"):
            raise ValueError(f"Engine: bn_eps must be finite and >= 0, got {bn_eps}")
        if not 0.0 <= bn_momentum <= 1.0:
            raise ValueError(f"Engine: bn_momentum must be in [0, 1], got {bn_momentum}")
        if max_batch < 1 or max_batch * sum(sizes) > _INT64_LIMIT // 16:
            raise ValueError(f"Engine: max_batch {max_batch} is out of range for layer sizes "
                             f"{list(sizes)}")
        self.n_layers = len(sizes) - 1
        self.max_batch = max_batch
        self.bits = 32 if params.dtype == np.float32 else 64
        self.sizes = sizes
        self.n_in, self.n_out = sizes[0], sizes[len(sizes) - 1]
        self.loss = loss
        cdef fn_mlp_config cfg
        cfg.act = act
        cfg.batch_norm = batch_norm
        cfg.dropout = dropout
        cfg.bn_eps = bn_eps
        cfg.bn_momentum = bn_momentum
        cfg.loss = loss
        cdef fn_int[::1] sz = np.asarray(sizes, dtype=np.intp)
        cdef fn_int n_ws = 0, n_masks = 0, n_scratch = 0
        self.n_params = params.shape[0]
        fn_mlp_workspace_size(self.n_layers, &sz[0], &cfg, max_batch, self.n_params, self.bits,
                              &n_ws, &n_masks, &n_scratch)
        workspace = np.zeros(n_ws, dtype=params.dtype)
        masks = np.zeros(n_masks, dtype=np.uint8)
        scratch = np.zeros(n_scratch, dtype=np.float64)
        self.workspace_bytes = workspace.nbytes + masks.nbytes + scratch.nbytes
        self._keep = (params, grads, buffers, workspace, masks, scratch)
        self._alive = np.zeros(max(sizes), dtype=np.uint8)     # layer_stats' unit flags
        if self.bits == 32:
            self.l32 = <fn_layer_f32 *>PyMem_Malloc(self.n_layers * sizeof(fn_layer_f32))
            if self.l32 == NULL:
                raise MemoryError()
            _bind[float](self, params, grads, buffers, workspace, masks, scratch, sz, &cfg)
        else:
            self.l64 = <fn_layer_f64 *>PyMem_Malloc(self.n_layers * sizeof(fn_layer_f64))
            if self.l64 == NULL:
                raise MemoryError()
            _bind[double](self, params, grads, buffers, workspace, masks, scratch, sz, &cfg)
        self.opt_step = 0
        self.last_rows = 0
        self.begin_epoch()

    def __dealloc__(self):
        PyMem_Free(self.l32)
        PyMem_Free(self.l64)

    @property
    def freeze_bn_stats(self):
        return bool(self.n32.freeze_bn_stats if self.bits == 32 else self.n64.freeze_bn_stats)

    @freeze_bn_stats.setter
    def freeze_bn_stats(self, bint value):
        self.n32.freeze_bn_stats = value
        self.n64.freeze_bn_stats = value

    def begin_epoch(self):
        """Reset the running sums of loss, accuracy and gradient norm."""
        self.loss_sum = 0
        self.grad_norm_sum = 0
        self.correct = 0
        self.rows = 0
        self.steps = 0

    def set_data(self, x, labels, targets, weights):
        """Bind the training rows (validated, C-contiguous, model dtype; never written, so
        read-only arrays and memory maps are fine)."""
        dtype = self._dtype()
        if not isinstance(x, np.ndarray) or x.ndim != 2 or x.shape[0] < 1:
            raise ValueError(f"Engine: x must be a non-empty 2-D array, got "
                             f"{getattr(x, 'shape', type(x).__name__)}")
        n = x.shape[0]
        _check_array(x, "x", (n, self.n_in), dtype)
        self._set_rows(n, labels, targets, weights)
        self._data_refs = (x, labels, targets, weights)
        if self.bits == 32:
            _set_batch[float](&self.b32, x, targets, weights)
            self.b32.csr = NULL
        else:
            _set_batch[double](&self.b64, x, targets, weights)
            self.b64.csr = NULL

    def _set_rows(self, Py_ssize_t n, labels, targets, weights):
        """Check and bind the per-row arrays of n training rows."""
        dtype = self._dtype()
        if self.loss == FN_LOSS_CROSS_ENTROPY:
            if labels is None:
                raise ValueError("Engine: cross-entropy needs labels")
            _check_array(labels, "labels", (n,), np.int64)
            if labels.min() < 0 or labels.max() >= self.n_out:
                raise ValueError(f"Engine: labels must be in [0, {self.n_out})")
        else:
            if targets is None:
                raise ValueError("Engine: mse needs targets")
            _check_array(targets, "targets", (n, self.n_out), dtype)
        if weights is not None:
            _check_array(weights, "weights", (n,), dtype)
        self._n_rows = n
        self._order = None
        self._has_order = False
        self.b32.labels = self.b64.labels = _labels_ptr(labels)
        self._has_data = True

    def set_csr_data(self, indptr, indices, values, Py_ssize_t n_cols, labels, targets,
                     weights):
        """Bind training rows given as a CSR matrix (the indptr, indices and data arrays
        of a canonical scipy.sparse CSR matrix: column indices sorted and unique within
        each row) instead of :meth:`set_data`; the first layer then multiplies them
        sparse.  Never written, so read-only arrays are fine."""
        dtype = self._dtype()
        n = _check_csr(indptr, indices, values, n_cols, self.n_in, dtype)
        self._set_rows(n, labels, targets, weights)
        # the weight gradient's workspace: a batch holds at most max_batch longest rows
        longest = int(np.max(indptr[1:] - indptr[:-1]))
        nnz = max(1, longest * min(self.max_batch, n))
        work_index = np.empty(fn_csr_grad_work_size(n_cols, nnz), dtype=np.int64)
        work_values = np.empty(nnz, dtype=dtype)
        self._data_refs = (indptr, indices, values, labels, targets, weights, work_index,
                           work_values)
        if self.bits == 32:
            _set_batch[float](&self.b32, None, targets, weights)
            _set_csr[float](&self.c32, indptr, indices, values, n, n_cols)
            _set_csr_work[float](&self.b32, &self.c32, work_index, work_values)
        else:
            _set_batch[double](&self.b64, None, targets, weights)
            _set_csr[double](&self.c64, indptr, indices, values, n, n_cols)
            _set_csr_work[double](&self.b64, &self.c64, work_index, work_values)

    def forward_csr(self, indptr, indices, values, Py_ssize_t n_cols, out):
        """:meth:`forward` of the rows of a CSR matrix (as :meth:`set_csr_data` takes
        it) into out."""
        cdef Py_ssize_t n = _check_csr(indptr, indices, values, n_cols, self.n_in,
                                       self._dtype())
        _check_array(out, "out", (n, self.n_out), self._dtype(), writeable=True)
        if self.bits == 32:
            _forward_csr[float](self, indptr, indices, values, n, n_cols, out)
        else:
            _forward_csr[double](self, indptr, indices, values, n, n_cols, out)
        return out

    def _dtype(self):
        return np.float32 if self.bits == 32 else np.float64

    def set_reducer(self, reducer):
        """Synchronised batch norm: `reducer(start, stop)` must sum
        ``self.bn_sums[start:stop]`` (float64) over all processes in place;
        it is called from inside the training step, with the GIL.  None: off."""
        self._reducer = reducer
        self._reduce_error = None
        if reducer is None:
            self.n32.reduce = NULL
            self.n64.reduce = NULL
            return
        widest = max(self.n32.layers[l].fan_out if self.bits == 32 else
                     self.n64.layers[l].fan_out for l in range(self.n_layers))
        self.bn_sums = np.zeros(2 * widest, dtype=np.float64)
        cdef double[::1] sums = self.bn_sums
        self.n32.reduce = _reduce_callback
        self.n64.reduce = _reduce_callback
        self.n32.reduce_ctx = <void *>self
        self.n64.reduce_ctx = <void *>self
        self.n32.bn_sums = &sums[0]
        self.n64.bn_sums = &sums[0]

    def set_order(self, order):
        """Row order of the epoch (int64 indices into the bound data)."""
        if not self._has_data:
            raise RuntimeError("set_data first")
        if not isinstance(order, np.ndarray) or order.ndim != 1 or order.shape[0] < 1:
            raise ValueError("Engine: order must be a non-empty 1-D int64 array")
        _check_array(order, "order", order.shape, np.int64)
        cdef const int64_t[::1] o = order
        if not _all_below(&o[0], o.shape[0], self._n_rows):
            raise ValueError(f"Engine: order must index rows in [0, {self._n_rows})")
        self._order = order
        self.b32.index = &o[0]
        self.b64.index = &o[0]
        self._has_order = True

    def set_optimizer(self, int kind, double momentum, double beta1, double beta2, double eps,
                      double weight_decay, bint nesterov, int64_t step, buf1, buf2):
        """Bind an optimizer's hyper-parameters and state buffers (flat, n_params)."""
        if kind not in OPTIMIZERS.values():
            raise ValueError(f"Engine: unknown optimizer code {kind}")
        # SGD reads its momentum buffer only with momentum; Adam(W) reads both
        needed = (momentum != 0, False) if kind == FN_OPT_SGD else (True, True)
        for name, buf, need in (("buf1", buf1, needed[0]), ("buf2", buf2, needed[1])):
            if buf is not None or need:
                _check_array(buf, name, (self.n_params,), self._dtype(), writeable=True)
        self._opt_refs = (buf1, buf2)
        self.opt_step = step
        if self.bits == 32:
            _set_optim[float](&self.o32, kind, momentum, beta1, beta2, eps, weight_decay,
                              nesterov, buf1, buf2)
        else:
            _set_optim[double](&self.o64, kind, momentum, beta1, beta2, eps, weight_decay,
                               nesterov, buf1, buf2)
        self._has_opt = True

    cdef double _step_work_ns(self, Py_ssize_t n) noexcept nogil:
        return fn_mlp_work_ns_f32(&self.n32, n, 1) if self.bits == 32 else \
            fn_mlp_work_ns_f64(&self.n64, n, 1)

    cdef int _train(self, fn_team *team, Py_ssize_t start, Py_ssize_t n, double lr,
                    double clip_norm, uint64_t seed, uint32_t step_index, bint update,
                    double total_weight, Py_ssize_t total_rows, Py_ssize_t row0,
                    fn_result *res) except -1:
        """One step on rows order[start:start + n] in a team session (checked
        arguments), and the epoch's running sums."""
        cdef fn_blas blas = blas_table()
        cdef fn_mlp_f32 *n32 = &self.n32
        cdef fn_mlp_f64 *n64 = &self.n64
        cdef fn_batch_f32 *b32 = &self.b32
        cdef fn_batch_f64 *b64 = &self.b64
        cdef fn_optim_f32 *o32 = &self.o32 if update else NULL
        cdef fn_optim_f64 *o64 = &self.o64 if update else NULL
        cdef const int64_t *index = self.b32.index
        cdef const int64_t *batch_index = index + start
        if self.bits == 32:
            b32.index = batch_index
            b32.n = n
            b32.seed = seed
            b32.step = step_index
            b32.total_weight = total_weight
            b32.total_rows = total_rows
            b32.row0 = row0
            self.o32.lr = lr
            self.o32.step = self.opt_step
            with nogil:
                fn_mlp_train_step_team_f32(team, &blas, n32, b32, o32, clip_norm, res)
        else:
            b64.index = batch_index
            b64.n = n
            b64.seed = seed
            b64.step = step_index
            b64.total_weight = total_weight
            b64.total_rows = total_rows
            b64.row0 = row0
            self.o64.lr = lr
            self.o64.step = self.opt_step
            with nogil:
                fn_mlp_train_step_team_f64(team, &blas, n64, b64, o64, clip_norm, res)
        self.b32.index = index
        self.b64.index = index
        if self._reduce_error is not None:
            error, self._reduce_error = self._reduce_error, None
            raise error
        if update:
            self.opt_step += 1
        self.loss_sum += res.loss * n
        self.correct += res.correct
        self.rows += n
        self.grad_norm_sum += res.grad_norm
        self.steps += 1
        self.last_grad_norm = res.grad_norm
        self.last_rows = n
        return 0

    def step(self, Py_ssize_t start, Py_ssize_t stop, double lr, double clip_norm,
             uint64_t seed, uint32_t step_index, bint update=True, double total_weight=0,
             Py_ssize_t total_rows=0, Py_ssize_t row0=0):
        """Train on rows order[start:stop]; returns the batch loss.

        With update=False only the loss and gradients are computed.  For a
        batch split over processes, total_weight (the whole batch's weight
        sum, or row count without weights) divides the loss instead of this
        part's, and total_rows is the whole batch's row count (synchronised
        batch norm); the returned loss is then this part's share.  row0 is
        the number of this part's first row in the whole batch (dropout masks
        as the whole batch on one process draws them).
        """
        cdef Py_ssize_t n = stop - start
        if not (self._has_data and self._has_order):
            raise RuntimeError("set_data and set_order first")
        if update and not self._has_opt:
            raise RuntimeError("set_optimizer first")
        if start < 0 or n < 1 or n > self.max_batch or stop > self._order.shape[0]:
            raise ValueError(f"bad batch [{start}, {stop}) for max_batch {self.max_batch}")
        cdef fn_result res
        cdef int nt = self.threads if self.threads > 0 else current_threads()
        cdef double work_ns = self._step_work_ns(n)
        cdef fn_team *team
        with nogil:
            team = team_begin(nt, work_ns)
        try:
            self._train(team, start, n, lr, clip_norm, seed, step_index, update, total_weight,
                        total_rows, row0, &res)
        finally:
            team_end(team)
        return res.loss

    def run_steps(self, Py_ssize_t first, Py_ssize_t last, Py_ssize_t batch_size, lr,
                  double clip_norm, uint64_t seed, uint64_t step0, double loss_limit,
                  should_stop):
        """Train the batches first, ..., last - 1 of the epoch's order in one
        team session, as as many calls of :meth:`step` would.

        Batch b is ``order[b * batch_size : (b + 1) * batch_size]`` (the last
        one shorter), its step index ``(step0 + b - first) mod 2**32``, its lr
        ``lr`` (a float) or ``lr[b - first]`` (a float64 array).  Stops after
        the first step whose loss is not finite or exceeds ``loss_limit``, or
        after which ``should_stop()`` is true (checked after every step, as a
        training loop checks Ctrl-C).

        Returns
        -------
        (steps, loss) : (int, float)
            Steps taken and the last step's loss.
        """
        if not (self._has_data and self._has_order and self._has_opt):
            raise RuntimeError("set_data, set_order and set_optimizer first")
        cdef Py_ssize_t rows = self._order.shape[0]
        if not (0 < batch_size <= self.max_batch and 0 <= first < last
                and (last - 1) * batch_size < rows):
            raise ValueError(f"bad batches [{first}, {last}) of {batch_size} rows for "
                             f"{rows} rows and max_batch {self.max_batch}")
        cdef const double[::1] lrs
        cdef double lr_now = 0
        cdef bint per_step = not isinstance(lr, float)
        if per_step:
            lrs = lr
            if lrs.shape[0] != last - first:
                raise ValueError(f"lr has {lrs.shape[0]} entries for {last - first} steps")
        else:
            lr_now = lr
        cdef fn_result res
        cdef int nt = self.threads if self.threads > 0 else current_threads()
        cdef double work_ns = self._step_work_ns(min(batch_size, rows))
        cdef fn_team *team
        cdef Py_ssize_t b, start
        with nogil:
            team = team_begin(nt, work_ns)
        try:
            for b in range(first, last):
                start = b * batch_size
                if per_step:
                    lr_now = lrs[b - first]
                self._train(team, start, min(batch_size, rows - start), lr_now, clip_norm, seed,
                            <uint32_t>((step0 + <uint64_t>(b - first)) & 0xFFFFFFFF), True,
                            0, 0, 0, &res)
                if not isfinite(res.loss) or res.loss > loss_limit or should_stop():
                    return b - first + 1, res.loss
        finally:
            team_end(team)
        return last - first, res.loss

    def layer_stats(self, double[::1] sumsq, int64_t[::1] dead):
        """Gradient-health figures of the last step, written into the arguments.

        ``sumsq[l]`` (n_layers) is ``||dW_l||_F^2``, the squared Frobenius
        norm of layer l's weight gradient, summed in double precision in a
        fixed order (``fn_sumsq_team`` on one thread), so it has the same
        bits for any thread count.  ``dead[l]`` (n_layers - 1) counts the
        units of hidden layer l whose activation output (after batch norm and
        the activation function, before dropout) is exactly 0 for every row
        of the last batch.  Reads the gradients and activations the step left
        behind: nothing is recomputed.
        """
        if self.last_rows == 0:
            raise RuntimeError("layer_stats needs a step first")
        if sumsq.shape[0] != self.n_layers or dead.shape[0] != self.n_layers - 1:
            raise ValueError(f"layer_stats needs arrays of {self.n_layers} and "
                             f"{self.n_layers - 1} entries")
        cdef double[::1] scratch = self._keep[5]
        cdef uint8_t[::1] alive = self._alive
        if self.bits == 32:
            _layer_stats(<void *>self.l32, self.n_layers, self.last_rows, &scratch[0],
                         &alive[0], sumsq, dead, <float>0)
        else:
            _layer_stats(<void *>self.l64, self.n_layers, self.last_rows, &scratch[0],
                         &alive[0], sumsq, dead, <double>0)

    def apply_update(self, double lr, double clip_norm):
        """Gradient norm, clipping and one optimizer update on the gradients
        as they are now (after step(..., update=False) and e.g. a sum over
        processes); returns the norm before clipping."""
        if not self._has_opt:
            raise RuntimeError("set_optimizer first")
        cdef fn_result res
        cdef int nt = self.threads if self.threads > 0 else current_threads()
        cdef double work_ns = 5.0 * self.n_params * FN_NS_PER_ELEMENT
        cdef fn_team *team
        cdef fn_mlp_f32 *n32 = &self.n32
        cdef fn_mlp_f64 *n64 = &self.n64
        cdef fn_optim_f32 *o32 = &self.o32
        cdef fn_optim_f64 *o64 = &self.o64
        if self.bits == 32:
            o32.lr = lr
            o32.step = self.opt_step
            with nogil:
                team = team_begin(nt, work_ns)
                fn_mlp_apply_update_team_f32(team, n32, o32, clip_norm, &res)
                team_end(team)
        else:
            o64.lr = lr
            o64.step = self.opt_step
            with nogil:
                team = team_begin(nt, work_ns)
                fn_mlp_apply_update_team_f64(team, n64, o64, clip_norm, &res)
                team_end(team)
        self.opt_step += 1
        return res.grad_norm

    def forward(self, x, out):
        """Inference outputs of x (running statistics, no dropout) into out.

        x (n, n_in) and out (n, n_out) must be C-contiguous in the engine's
        dtype and aligned, out writeable (checked in _forward: the typed views
        check dtype, layout and writeability, so a small call stays cheap).
        """
        if self.bits == 32:
            _forward[float](self, x, out)
        else:
            _forward[double](self, x, out)
        return out


cdef void _layer_stats(void *layers, int n_layers, Py_ssize_t n, double *scratch,
                       uint8_t *alive, double[::1] sumsq, int64_t[::1] dead,
                       floating tag) noexcept nogil:
    """Engine.layer_stats for one dtype (`tag` only selects it)."""
    cdef int l
    cdef Py_ssize_t i, j, f, alive_count
    cdef const floating *act
    cdef fn_layer_f32 *L32
    cdef fn_layer_f64 *L64
    for l in range(n_layers):
        if floating is float:
            L32 = (<fn_layer_f32 *>layers) + l
            sumsq[l] = fn_sumsq_team_f32(NULL, L32.fan_in * L32.fan_out, L32.dw, scratch)
            act = L32.act
            f = L32.fan_out
        else:
            L64 = (<fn_layer_f64 *>layers) + l
            sumsq[l] = fn_sumsq_team_f64(NULL, L64.fan_in * L64.fan_out, L64.dw, scratch)
            act = L64.act
            f = L64.fan_out
        if l == n_layers - 1:
            break
        memset(alive, 0, f)
        for i in range(n):
            for j in range(f):          # branch-free: the compiler vectorises it
                alive[j] |= act[i * f + j] != 0
        alive_count = 0
        for j in range(f):
            alive_count += alive[j]
        dead[l] = f - alive_count


cdef bint _all_below(const int64_t *values, Py_ssize_t count, int64_t limit) noexcept nogil:
    """0 <= values[i] < limit for all i (one branch-free pass)."""
    cdef Py_ssize_t i
    cdef uint64_t worst = 0
    for i in range(count):     # a negative value is a huge unsigned one
        worst = max(worst, <uint64_t>values[i])
    return worst < <uint64_t>limit


cdef void _set_batch(void *batch, const floating[:, ::1] x, const floating[:, ::1] targets,
                     const floating[::1] weights):
    cdef fn_batch_f32 *b32
    cdef fn_batch_f64 *b64
    if floating is float:
        b32 = <fn_batch_f32 *>batch
        b32.x = &x[0, 0] if x is not None else NULL
        b32.targets = &targets[0, 0] if targets is not None else NULL
        b32.weights = &weights[0] if weights is not None else NULL
    else:
        b64 = <fn_batch_f64 *>batch
        b64.x = &x[0, 0] if x is not None else NULL
        b64.targets = &targets[0, 0] if targets is not None else NULL
        b64.weights = &weights[0] if weights is not None else NULL


cdef const int64_t *_labels_ptr(labels):
    cdef const int64_t[::1] v
    if labels is None:
        return NULL
    v = labels
    return &v[0]


cdef void _set_optim(void *opt, int kind, double momentum, double beta1, double beta2,
                     double eps, double weight_decay, bint nesterov, floating[::1] buf1,
                     floating[::1] buf2):
    cdef fn_optim_f32 *o32
    cdef fn_optim_f64 *o64
    if floating is float:
        o32 = <fn_optim_f32 *>opt
        o32[0] = fn_optim_f32(kind, 0.0, momentum, beta1, beta2, eps, weight_decay, nesterov,
                              0, _opt_ptr(buf1), _opt_ptr(buf2))
    else:
        o64 = <fn_optim_f64 *>opt
        o64[0] = fn_optim_f64(kind, 0.0, momentum, beta1, beta2, eps, weight_decay, nesterov,
                              0, _opt_ptr(buf1), _opt_ptr(buf2))


cdef inline floating *_opt_ptr(floating[::1] v) noexcept:
    if v is None or v.shape[0] == 0:
        return NULL
    return &v[0]


cdef int _forward(Engine e, const floating[:, ::1] x, floating[:, ::1] out) except -1:
    cdef Py_ssize_t n = x.shape[0], s, m
    if n < 1 or x.shape[1] != e.n_in or out.shape[0] != n or out.shape[1] != e.n_out \
            or <size_t>&x[0, 0] % sizeof(floating) or <size_t>&out[0, 0] % sizeof(floating):
        raise ValueError(f"Engine: forward needs aligned arrays x of shape (n, {e.n_in}) and "
                         f"out of shape (n, {e.n_out}) with n >= 1, got "
                         f"({x.shape[0]}, {x.shape[1]}) and ({out.shape[0]}, {out.shape[1]})")
    cdef fn_blas blas = blas_table()
    cdef fn_team *team
    cdef fn_mlp_f32 *n32 = &e.n32
    cdef fn_mlp_f64 *n64 = &e.n64
    for s in range(0, n, e.max_batch):
        m = min(e.max_batch, n - s)
        with nogil:
            if floating is float:
                team = team_begin(0, fn_mlp_work_ns_f32(n32, m, 0))
                fn_mlp_forward_team_f32(team, &blas, n32, &x[s, 0], m, &out[s, 0])
            else:
                team = team_begin(0, fn_mlp_work_ns_f64(n64, m, 0))
                fn_mlp_forward_team_f64(team, &blas, n64, &x[s, 0], m, &out[s, 0])
            team_end(team)
    return 0


cdef void _reduce_callback(void *ctx, double *values, fn_int count) noexcept nogil:
    with gil:
        _call_reducer(<Engine>ctx, values, count)


cdef void _call_reducer(Engine e, double *values, fn_int count) noexcept:
    cdef double[::1] sums
    if e._reduce_error is not None:     # an earlier call failed: the step is lost anyway
        return
    try:
        sums = e.bn_sums
        start = values - &sums[0]
        e._reducer(start, start + count)
    except BaseException as exc:
        e._reduce_error = exc


# ---- sparse (CSR) input -------------------------------------------------------------

def _check_csr(indptr, indices, values, Py_ssize_t n_cols, Py_ssize_t n_in, dtype):
    """The row count of a valid CSR matrix for the first layer (ValueError otherwise:
    the native code trusts its offsets and column indices)."""
    if n_cols != n_in:
        raise ValueError(f"Engine: a CSR matrix of {n_cols} columns for {n_in} inputs")
    ok = all(isinstance(a, np.ndarray) and a.ndim == 1 and a.flags.c_contiguous
             and a.flags.aligned for a in (indptr, indices, values))
    if not ok or indptr.dtype not in (np.int32, np.int64) or indices.dtype != indptr.dtype \
            or values.dtype != dtype or indptr.shape[0] < 2 \
            or indices.shape[0] != values.shape[0]:
        raise ValueError(f"Engine: a CSR matrix needs 1-D C-contiguous indptr (int32 or "
                         f"int64, at least 2 entries), indices of the same dtype and "
                         f"{np.dtype(dtype).name} values as long as indices")
    if indptr[0] < 0 or indptr[indptr.shape[0] - 1] > indices.shape[0] \
            or np.any(indptr[1:] < indptr[:-1]):
        raise ValueError("Engine: CSR indptr must be non-decreasing offsets into indices")
    used = indices[indptr[0]:indptr[indptr.shape[0] - 1]]
    if used.shape[0] and (used.min() < 0 or used.max() >= n_cols):
        raise ValueError(f"Engine: CSR column indices must be in [0, {n_cols})")
    return indptr.shape[0] - 1


cdef void _set_csr(void *csr, indptr, indices, const floating[::1] values, Py_ssize_t n,
                   Py_ssize_t n_cols):
    cdef fn_csr_f32 *c32
    cdef fn_csr_f64 *c64
    cdef int bits = 32 if indptr.dtype == np.int32 else 64
    cdef const uint8_t[::1] p = indptr.view(np.uint8)
    cdef const uint8_t[::1] i = indices.view(np.uint8) if indices.shape[0] else None
    cdef const void *ip = <const void *>&p[0]
    cdef const void *ii = <const void *>&i[0] if i is not None else NULL
    cdef const floating *v = &values[0] if values.shape[0] else NULL
    if floating is float:
        c32 = <fn_csr_f32 *>csr
        c32[0] = fn_csr_f32(n, n_cols, bits, ip, ii, v)
    else:
        c64 = <fn_csr_f64 *>csr
        c64[0] = fn_csr_f64(n, n_cols, bits, ip, ii, v)


cdef void _set_csr_work(void *batch, void *csr, int64_t[::1] work_index,
                        floating[::1] work_values):
    cdef fn_batch_f32 *b32
    cdef fn_batch_f64 *b64
    if floating is float:
        b32 = <fn_batch_f32 *>batch
        b32.csr = <fn_csr_f32 *>csr
        b32.csr_work_index = &work_index[0]
        b32.csr_work_values = &work_values[0]
    else:
        b64 = <fn_batch_f64 *>batch
        b64.csr = <fn_csr_f64 *>csr
        b64.csr_work_index = &work_index[0]
        b64.csr_work_values = &work_values[0]


cdef int _forward_csr(Engine e, indptr, indices, const floating[::1] values, Py_ssize_t n,
                      Py_ssize_t n_cols, floating[:, ::1] out) except -1:
    """Engine.forward_csr for one dtype: max_batch rows a native call (a moved indptr
    describes them)."""
    cdef fn_blas blas = blas_table()
    cdef fn_team *team
    cdef fn_csr_f32 c32
    cdef fn_csr_f64 c64
    cdef Py_ssize_t s, m, width = indptr.dtype.itemsize
    cdef fn_mlp_f32 *n32 = &e.n32
    cdef fn_mlp_f64 *n64 = &e.n64
    _set_csr[floating](&c32 if floating is float else <void *>&c64, indptr, indices, values,
                       n, n_cols)
    cdef const char *start = <const char *>(c32.indptr if floating is float else c64.indptr)
    for s in range(0, n, e.max_batch):
        m = min(e.max_batch, n - s)
        with nogil:
            if floating is float:
                c32.rows = m
                c32.indptr = start + s * width
                team = team_begin(0, fn_mlp_work_ns_f32(n32, m, 0))
                fn_mlp_forward_csr_team_f32(team, &blas, n32, &c32, &out[s, 0])
            else:
                c64.rows = m
                c64.indptr = start + s * width
                team = team_begin(0, fn_mlp_work_ns_f64(n64, m, 0))
                fn_mlp_forward_csr_team_f64(team, &blas, n64, &c64, &out[s, 0])
            team_end(team)
    return 0
