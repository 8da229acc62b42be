"""The fast exact adaptive activation against the naive [N, ..., M] oracle: values, gradients (gradcheck in
float64, including inputs exactly on hinges and at 0), bucketing exactness, memory saved for backward."""
from __future__ import annotations

import math

import pytest
import torch

from mtlbench.taan import (
    AdaptiveActivation,
    adaptive_activation,
    apl,
    bucket_index,
    eager,
    naive_adaptive_activation,
    uniform_grid,
)

F64 = torch.float64


def gen(seed):
    return torch.Generator().manual_seed(seed)


def random_case(shape, n_tasks, m, dtype, seed, segments):
    g = gen(seed)
    z = (torch.randn(shape, generator=g) * 2.0).to(dtype)
    alpha = torch.randn(n_tasks, m, generator=g).to(dtype)
    return z, alpha


def grads(fn, z, alpha, b, segments, g_out):
    z, alpha, b = (t.detach().clone().requires_grad_(True) for t in (z, alpha, b))
    y = fn(z, alpha, b, segments)
    return (y, *torch.autograd.grad(y, (z, alpha, b), g_out))


CASES = [
    ((24, 7), [(1, 10), (0, 6), (2, 8)]),               # dense, tasks out of order
    ((12, 3, 4, 5), [(2, 5), (0, 4), (1, 3)]),          # conv [N, C, H, W]
    ((10, 6), [(0, 3), (1, 0), (0, 4), (2, 3)]),        # a task twice and an empty block
]


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("b_kind", ["grid", "sorted_random"])
@pytest.mark.parametrize("shape,segments", CASES)
def test_fast_equals_naive_values_and_gradients(shape, segments, b_kind, dtype):
    m, n_tasks = 9, 3
    z, alpha = random_case(shape, n_tasks, m, dtype, seed=len(shape), segments=segments)
    if b_kind == "grid":
        b = torch.linspace(-3, 3, m, dtype=dtype)
        grid = uniform_grid(b)
        assert grid is not None
        z.view(-1)[: 2 * m: 2] = b  # some inputs exactly on hinges
    else:
        b = torch.sort(torch.randn(m, generator=gen(7)) * 1.5).values.to(dtype)
        b[4] = b[3]  # a repeated hinge
        grid = None
        z.view(-1)[:m] = b
    z.view(-1)[-1] = 0.0
    g_out = torch.randn(shape, generator=gen(9)).to(dtype)
    fast = grads(lambda *a: adaptive_activation(*a, grid=grid), z, alpha, b, segments, g_out)
    naive = grads(naive_adaptive_activation, z, alpha, b, segments, g_out)
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == F64 else dict(rtol=1e-5, atol=1e-4)
    for name, f, n in zip(["value", "d_z", "d_alpha", "d_b"], fast, naive):
        assert f.dtype == dtype and f.shape == n.shape
        torch.testing.assert_close(f, n, **tol, msg=lambda m_: f"{name}: {m_}")  # noqa: B023 -- called within this iteration


def test_chunks_cutting_rows_and_tasks_change_nothing(monkeypatch):
    """The fast path walks the batch in chunks that ignore task boundaries; tiny chunks must give the same
    values and gradients as one chunk."""
    z, alpha = random_case((30, 7), 3, 8, F64, seed=11, segments=None)
    b = torch.linspace(-2, 2, 8, dtype=F64)
    segs, g_out = [(2, 11), (0, 9), (1, 10)], torch.randn(30, 7, generator=gen(12), dtype=F64)
    whole = grads(lambda *a: adaptive_activation(*a, grid=uniform_grid(b)), z, alpha, b, segs, g_out)
    monkeypatch.setattr(eager, "CHUNK_ELEMENTS", 20)  # 2 rows of 7 per chunk
    assert len(eager.row_chunks(30, 7)) == 15
    chunked = grads(lambda *a: adaptive_activation(*a, grid=uniform_grid(b)), z, alpha, b, segs, g_out)
    for w, c in zip(whole, chunked):
        torch.testing.assert_close(c, w, rtol=1e-13, atol=1e-13)
    naive = grads(naive_adaptive_activation, z, alpha, b, segs, g_out)
    for n, c in zip(naive, chunked):
        torch.testing.assert_close(c, n, rtol=1e-12, atol=1e-12)


def smooth_points(n, b, seed, margin=1e-3):
    """Random inputs at least ``margin`` from every hinge and from 0 (finite differences straddle no kink)."""
    x = torch.randn(n, generator=gen(seed), dtype=F64) * 2
    kinks = torch.cat([b, torch.zeros(1, dtype=F64)])
    near = (x[:, None] - kinks[None, :]).abs().min(1).values < margin
    return x[~near]


@pytest.mark.parametrize("use_grid", [True, False])
def test_gradcheck_x_alpha_b(use_grid):
    b = (torch.linspace(-2, 2, 6, dtype=F64) if use_grid
         else torch.tensor([-1.7, -0.4, 0.3, 0.9, 2.2], dtype=F64))
    grid = uniform_grid(b) if use_grid else None
    x = smooth_points(40, b, seed=3)[:30].view(6, 5).requires_grad_(True)
    alpha = torch.randn(2, b.numel(), generator=gen(4), dtype=F64).requires_grad_(True)
    bb = b.clone().requires_grad_(True)
    fn = lambda x_, a_, b_: adaptive_activation(x_, a_, b_, [(1, 2), (0, 4)], grid)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, alpha, bb))


def test_gradcheck_on_hinges_and_zero():
    """Inputs exactly on hinges and at 0: F is linear in alpha there, so d/dalpha is checked as is; in x and
    b the kinks are removed by zeroing the coefficients of the hinges the inputs sit on (relu's own kink at 0
    is avoided by an offset), which checks that the bucket boundaries are handled exactly."""
    b = torch.linspace(-2, 2, 5, dtype=F64)  # contains 0
    x = torch.cat([b, b, torch.zeros(2, dtype=F64)]).view(3, 4)
    alpha = torch.randn(3, 5, generator=gen(5), dtype=F64).requires_grad_(True)
    for grid in (uniform_grid(b), None):
        fn = lambda a_: adaptive_activation(x, a_, b, [(0, 1), (2, 2)], grid)  # noqa: E731, B023 -- called within this iteration
        assert torch.autograd.gradcheck(fn, (alpha,))
        on = torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0], dtype=F64)  # hinges -1 and 1 carry no coefficient
        xs = torch.tensor([[-1.0, 1.0, -1.0, 1.0], [1.0, -1.0, 0.5, -1.5], [-1.0, 1.0, 1.0, -1.0]], dtype=F64)
        a = (torch.randn(3, 5, generator=gen(6), dtype=F64) * (1 - on)).requires_grad_(True)
        bb = b.clone().requires_grad_(True)
        fn2 = lambda x_, b_: adaptive_activation(x_, a, b_, [(0, 1), (2, 2)], grid)  # noqa: E731, B023 -- called within this iteration
        assert torch.autograd.gradcheck(fn2, (xs.clone().requires_grad_(True), bb))


def test_kinks_follow_relu_convention():
    """At x == b_i the hinge's derivative is 0 (relu'(0) = 0, the bucket above), at x == 0 too: identical to
    autograd through the naive form."""
    b = torch.tensor([-1.0, 0.0, 1.0], dtype=F64)
    x = torch.tensor([[-1.0, 0.0, 1.0]], dtype=F64, requires_grad=True)
    alpha = torch.tensor([[0.5, -2.0, 3.0]], dtype=F64)
    (dx,) = torch.autograd.grad(adaptive_activation(x, alpha, b, [(0, 1)], uniform_grid(b)).sum(), x)
    # x=-1: hinges 0 and 1 active -> -(alpha1 + alpha2); x=0: hinge 1 -> -alpha2 (relu'(0)=0); x=1: relu' = 1
    assert dx.tolist() == [[-1.0, -3.0, 1.0]]
    (dn,) = torch.autograd.grad(naive_adaptive_activation(x, alpha, b, [(0, 1)]).sum(), x)
    assert torch.equal(dx, dn)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_arithmetic_bucket_is_exact_next_to_every_hinge(dtype):
    for lo, hi, m in [(-3.0, 3.0, 64), (-0.37, 5.1, 33), (-1e-3, 2e-3, 7)]:
        b = torch.linspace(lo, hi, m, dtype=dtype)
        grid = uniform_grid(b)
        assert grid is not None
        pinf, ninf = torch.tensor(math.inf, dtype=dtype), torch.tensor(-math.inf, dtype=dtype)
        x = torch.cat([b, torch.nextafter(b, pinf), torch.nextafter(b, ninf),
                       torch.tensor([lo - 10, hi + 10, 0.0, -0.0], dtype=dtype),
                       torch.empty(200, dtype=dtype).uniform_(lo - 1, hi + 1, generator=gen(m))])
        assert torch.equal(bucket_index(x, b, grid), torch.bucketize(x, b, right=True))
        assert torch.equal(bucket_index(x, b, None), (x[:, None] >= b[None, :]).sum(1))


def test_nan_input_gives_nan_not_an_index_error():
    b = torch.linspace(-3, 3, 8)
    x = torch.tensor([[float("nan"), 1.0]])
    y = adaptive_activation(x, torch.ones(1, 8), b, [(0, 1)], uniform_grid(b))
    assert torch.isnan(y[0, 0]) and torch.isfinite(y[0, 1])


def test_non_uniform_b_is_not_taken_for_a_grid():
    assert uniform_grid(torch.tensor([-1.0, 0.0, 0.3, 1.0])) is None
    assert uniform_grid(torch.tensor([0.5])) is None
    assert uniform_grid(torch.linspace(-3, 3, 64)) is not None


@pytest.mark.parametrize("n_tasks,m,limit", [(1, 64, 5.0), (4, 64, 6.0), (16, 64, 6.0)])
def test_saved_memory_per_element_is_small(n_tasks, m, limit):
    """Saved for backward: x (4 bytes in float32) + the code (uint8 up to 256 codes T * 2(M+1), else int16),
    never an [N, H, M] tensor: <= 8 bytes per element."""
    saved = []

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t

    z = torch.randn(16 * n_tasks, 128, requires_grad=True)
    alpha = torch.randn(n_tasks, m, requires_grad=True)
    b = torch.linspace(-3, 3, m)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = adaptive_activation(z, alpha, b, [(t, 16) for t in range(n_tasks)], uniform_grid(b))
    bytes_per_element = (sum(saved) - alpha.numel() * 4 - b.numel() * 4) / z.numel()
    assert bytes_per_element <= limit + 1e-9
    y.sum().backward()
    assert z.grad is not None and alpha.grad is not None


def test_apl_matches_definition_with_unsorted_b():
    b = torch.tensor([1.0, -2.0, 0.5], dtype=F64, requires_grad=True)
    a = torch.tensor([0.3, -1.1, 2.0], dtype=F64, requires_grad=True)
    x = torch.linspace(-4, 4, 17, dtype=F64).view(17, 1, 1)
    want = torch.relu(x) + sum(a[i] * torch.relu(b[i] - x) for i in range(3))
    got = apl(x, a, b)
    assert got.shape == x.shape
    torch.testing.assert_close(got, want, rtol=0, atol=1e-14)
    ga = torch.autograd.grad(got.sum(), (a, b))
    gw = torch.autograd.grad(want.sum(), (a, b))
    for p, q in zip(ga, gw):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-12)


def test_segments_are_checked():
    z, alpha, b = torch.zeros(5, 2), torch.zeros(2, 3), torch.linspace(-1, 1, 3)
    with pytest.raises(ValueError, match="segments cover 4 rows"):
        adaptive_activation(z, alpha, b, [(0, 4)])
    with pytest.raises(ValueError, match="task index 2"):
        adaptive_activation(z, alpha, b, [(2, 5)])


@pytest.mark.parametrize("b_mode", ["fixed", "learned"])
def test_module_matches_naive_and_keeps_learned_b_sorted(b_mode):
    torch.manual_seed(0)
    act = AdaptiveActivation(3, 12, b_mode=b_mode, b_init={"kind": "uniform", "lo": -2, "hi": 2},
                             alpha_init={"kind": "normal", "std": 0.5}).double()
    if b_mode == "learned":
        with torch.no_grad():  # an optimizer step may push hinges past each other
            act.b[[2, 7]] = act.b[[7, 2]].clone()
        assert not bool((act.b[1:] >= act.b[:-1]).all())
    z = torch.randn(9, 4, 2, 2, dtype=F64, requires_grad=True)
    segs = [(2, 3), (0, 3), (1, 3)]
    y = act(z, segs)
    alpha_ref = act.alpha.detach().clone().requires_grad_(True)
    b_ref = act.b.detach().clone().requires_grad_(True)
    y_ref = naive_adaptive_activation(z, alpha_ref, b_ref, segs)  # the oracle does not need sorted b
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(y)
    y.backward(g)
    y_ref.backward(g)
    torch.testing.assert_close(act.alpha.grad, alpha_ref.grad, rtol=1e-10, atol=1e-10)
    if b_mode == "learned":  # gradients land on the stored (unsorted) entries they belong to
        torch.testing.assert_close(act.b.grad, b_ref.grad, rtol=1e-10, atol=1e-10)
    _, b_s = act.ordered()
    assert bool((b_s[1:] >= b_s[:-1]).all())


def test_fixed_grid_module_rechecks_b_after_load():
    act = AdaptiveActivation(2, 5, alpha_init={"kind": "normal", "std": 1.0})
    assert act._fixed_layout()[1] is not None
    state = act.state_dict()
    state["b"] = torch.tensor([-1.0, -0.9, 0.0, 2.0, 2.5])  # not a uniform grid
    act.load_state_dict(state)
    z = torch.linspace(-3, 3, 20).view(2, 10)
    segs = [(0, 1), (1, 1)]
    torch.testing.assert_close(act(z, segs), naive_adaptive_activation(z, act.alpha, act.b, segs))
    assert act._fixed_layout()[1] is None
