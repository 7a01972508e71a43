"""fastnet.optim: the native updates against torch.optim, state round trips, argument checks."""
import copy

import numpy as np
import pytest
import torch

import fastnet
from fastnet import optim

# float32: the C update and torch round differently (a reciprocal multiply vs a
# division, fused vs separate operations), a few ulp per step.
RTOL = {np.float32: 1e-5, np.float64: 1e-12}
TORCH_DTYPE = {np.float32: torch.float32, np.float64: torch.float64}
N_STEPS = 6


@pytest.fixture(autouse=True)
def _one_thread():
    """One fastnet thread: the machine is shared, and an oversubscribed OpenMP team
    spends its time in barriers (1 vs 2 threads is covered by the determinism tests)."""
    with fastnet.threads(1):
        yield

CASES = {
    "sgd": (optim.SGD, torch.optim.SGD, dict(lr=0.1), dict(lr=0.1)),
    "sgd-momentum": (optim.SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9),
                     dict(lr=0.05, momentum=0.9)),
    "sgd-nesterov": (optim.SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.8, nesterov=True),
                     dict(lr=0.05, momentum=0.8, nesterov=True)),
    "sgd-momentum-wd": (optim.SGD, torch.optim.SGD,
                        dict(lr=0.05, momentum=0.9, weight_decay=0.1),
                        dict(lr=0.05, momentum=0.9, weight_decay=0.1)),
    "sgd-nesterov-wd": (optim.SGD, torch.optim.SGD,
                        dict(lr=0.05, momentum=0.7, nesterov=True, weight_decay=0.05),
                        dict(lr=0.05, momentum=0.7, nesterov=True, weight_decay=0.05)),
    "adam": (optim.Adam, torch.optim.Adam, dict(lr=1e-2), dict(lr=1e-2)),
    "adam-l2": (optim.Adam, torch.optim.Adam,
                dict(lr=3e-3, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.1),
                dict(lr=3e-3, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    "adamw": (optim.AdamW, torch.optim.AdamW, dict(lr=1e-2), dict(lr=1e-2)),
    "adamw-wd": (optim.AdamW, torch.optim.AdamW,
                 dict(lr=3e-3, beta1=0.85, beta2=0.995, eps=1e-7, weight_decay=0.3),
                 dict(lr=3e-3, betas=(0.85, 0.995), eps=1e-7, weight_decay=0.3)),
}


def _problem(dtype, shapes=((7, 5), (5,), (3, 4)), seed=0):
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(N_STEPS)]
    return params, grads


def _torch_run(torch_cls, kwargs, params, grads, dtype):
    tp = [torch.tensor(p.copy(), dtype=TORCH_DTYPE[dtype], requires_grad=True) for p in params]
    opt = torch_cls(tp, **kwargs)
    out = []
    for step_grads in grads:
        for t, g in zip(tp, step_grads):
            t.grad = torch.tensor(g, dtype=TORCH_DTYPE[dtype])
        opt.step()
        out.append([t.detach().numpy().copy() for t in tp])
    return out


def _assert_close(actual, expected, rtol, what):
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * np.max(np.abs(expected)),
                               err_msg=what)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_step_matches_torch(case, dtype):
    ours_cls, torch_cls, kw, tkw = CASES[case]
    params, grads = _problem(dtype)
    expected = _torch_run(torch_cls, tkw, params, grads, dtype)
    opt = ours_cls(**kw)
    ours = [p.copy() for p in params]
    for step, step_grads in enumerate(grads):
        opt.step(ours, step_grads)
        assert opt.t == step + 1
        for i, (p, e) in enumerate(zip(ours, expected[step])):
            assert p.dtype == dtype
            _assert_close(p, e, RTOL[dtype], f"{case} step {step} param {i}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("case", ["sgd-momentum", "adam-l2", "adamw-wd"])
def test_single_array_and_large_array(case, dtype):
    """A bare array (not a list), large enough to span several native chunks/threads."""
    ours_cls, torch_cls, kw, tkw = CASES[case]
    params, grads = _problem(dtype, shapes=((300, 170),), seed=3)
    expected = _torch_run(torch_cls, tkw, params, grads, dtype)
    opt = ours_cls(**kw)
    p = params[0].copy()
    for step, g in enumerate(grads):
        opt.step(p, g[0])
        _assert_close(p, expected[step][0], RTOL[dtype], f"{case} step {step}")


def test_grad_scale_scales_the_gradient():
    params, grads = _problem(np.float64, shapes=((4, 3),))
    a, b = params[0].copy(), params[0].copy()
    oa, ob = optim.SGD(lr=0.1, momentum=0.9), optim.SGD(lr=0.1, momentum=0.9)
    for g in grads:
        oa.step(a, g[0], grad_scale=0.25)
        ob.step(b, g[0] * 0.25)
    np.testing.assert_allclose(a, b, rtol=1e-14)


def test_update_is_in_place():
    p = np.ones((3, 2), dtype=np.float32)
    view = p
    optim.SGD(lr=0.5).step(p, np.ones_like(p))
    assert view is p
    np.testing.assert_array_equal(p, 0.5)


# ---------------------------------------------------------------------------
# state_dict round trip
# ---------------------------------------------------------------------------

STATE_CASES = ["sgd-momentum", "sgd-nesterov-wd", "adam-l2", "adamw-wd"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("case", STATE_CASES)
def test_state_dict_round_trip_continues_bit_identically(case, dtype):
    ours_cls, _, kw, _ = CASES[case]
    params, grads = _problem(dtype)
    k = 3
    # reference: N_STEPS steps without interruption
    ref_opt = ours_cls(**kw)
    ref = [p.copy() for p in params]
    for g in grads:
        ref_opt.step(ref, g)
    # k steps, state_dict, a fresh optimizer loads it, N_STEPS - k more steps
    first = ours_cls(**kw)
    run = [p.copy() for p in params]
    for g in grads[:k]:
        first.step(run, g)
    state = first.state_dict()
    saved = copy.deepcopy(state)
    # the state is a copy: more steps of `first` must not change it
    first.step([p.copy() for p in run], grads[k])
    for a, b in zip(state["buffers"], saved["buffers"]):
        for x, y in zip(a, b):
            if x is not None:
                np.testing.assert_array_equal(x, y)
    assert state["t"] == k
    second = ours_cls(lr=0.123)    # other hyper-parameters: load_state_dict restores them
    second.load_state_dict(state)
    assert second.lr == kw["lr"] and second.t == k
    for g in grads[k:]:
        second.step(run, g)
    for i, (a, b) in enumerate(zip(run, ref)):
        assert a.tobytes() == b.tobytes(), f"{case}: param {i} differs after resume"
    # loading copies the buffers: stepping `second` left `state` alone
    for a, b in zip(state["buffers"], saved["buffers"]):
        for x, y in zip(a, b):
            if x is not None:
                np.testing.assert_array_equal(x, y)


def test_state_dict_contents():
    opt = optim.AdamW(lr=2e-3, beta1=0.8, beta2=0.98, eps=1e-7, weight_decay=0.05)
    state = opt.state_dict()
    assert state["name"] == "adamw"
    assert (state["lr"], state["beta1"], state["beta2"], state["eps"], state["weight_decay"]) \
        == (2e-3, 0.8, 0.98, 1e-7, 0.05)
    assert state["t"] == 0
    sgd = optim.SGD(lr=0.1, momentum=0.5, nesterov=True, weight_decay=1e-4).state_dict()
    assert (sgd["momentum"], sgd["nesterov"], sgd["weight_decay"]) == (0.5, True, 1e-4)


def test_load_state_dict_of_another_optimizer_raises():
    with pytest.raises(ValueError):
        optim.Adam().load_state_dict(optim.SGD().state_dict())
    with pytest.raises(ValueError):
        optim.AdamW().load_state_dict(optim.Adam().state_dict())


# ---------------------------------------------------------------------------
# argument checks
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("cls, kwargs", [
    (optim.SGD, dict(lr=-0.1)),
    (optim.SGD, dict(lr=float("nan"))),
    (optim.SGD, dict(lr=float("inf"))),
    (optim.SGD, dict(momentum=-0.1)),
    (optim.SGD, dict(momentum=1.5)),
    (optim.SGD, dict(nesterov=True)),                 # Nesterov without momentum
    (optim.SGD, dict(weight_decay=-1.0)),
    (optim.Adam, dict(lr=-1e-3)),
    (optim.Adam, dict(beta1=1.0)),
    (optim.Adam, dict(beta1=-0.1)),
    (optim.Adam, dict(beta2=1.0)),
    (optim.Adam, dict(beta2=1.2)),
    (optim.Adam, dict(eps=-1e-8)),
    (optim.Adam, dict(weight_decay=-0.1)),
    (optim.AdamW, dict(beta1=1.0)),
    (optim.AdamW, dict(weight_decay=-0.01)),
    (optim.AdamW, dict(lr=float("nan"))),
])
def test_bad_hyper_parameters_raise_value_error(cls, kwargs):
    with pytest.raises(ValueError):
        cls(**kwargs)


@pytest.mark.parametrize("cls, kwargs", [
    (optim.SGD, dict(lr="0.1")),
    (optim.SGD, dict(lr=None)),
    (optim.SGD, dict(momentum=True)),
    (optim.Adam, dict(beta1="0.9")),
    (optim.AdamW, dict(eps=None)),
])
def test_bad_hyper_parameter_types_raise_type_error(cls, kwargs):
    with pytest.raises(TypeError):
        cls(**kwargs)


def test_step_argument_checks():
    opt = optim.Adam()
    p = np.zeros((3, 4), dtype=np.float32)
    with pytest.raises(ValueError):
        opt.step(p, np.zeros((4, 3), dtype=np.float32))
    with pytest.raises(ValueError):
        opt.step([p, p.copy()], [np.zeros_like(p)])
    with pytest.raises(TypeError):     # mixed float dtypes
        opt.step(p, np.zeros((3, 4), dtype=np.float64))
    with pytest.raises(TypeError):     # cannot update a non-contiguous view in place
        opt.step(np.zeros((4, 6), dtype=np.float32)[:, ::2], np.zeros((4, 3), np.float32))
    with pytest.raises(TypeError):     # integer parameters
        opt.step(np.zeros(3, dtype=np.int64), np.zeros(3, dtype=np.int64))
    ro = np.zeros(3, dtype=np.float32)
    ro.flags.writeable = False
    with pytest.raises(TypeError):
        opt.step(ro, np.zeros(3, dtype=np.float32))
    assert opt.t == 0
    np.testing.assert_array_equal(p, 0)


def test_get_builds_named_optimizers():
    assert isinstance(optim.get("sgd"), optim.SGD)
    assert isinstance(optim.get("ADAM"), optim.Adam)
    o = optim.get("adamw", lr=0.5, weight_decay=0.2)
    assert isinstance(o, optim.AdamW) and o.lr == 0.5 and o.weight_decay == 0.2
    mine = optim.SGD()
    assert optim.get(mine) is mine
    with pytest.raises(ValueError):
        optim.get("rmsprop")
    with pytest.raises(ValueError):
        optim.get(3)
