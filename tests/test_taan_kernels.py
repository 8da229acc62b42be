"""The adaptive activation's kernels: the compiled (torch.compile) kernels against the eager ones and the
naive [N, ..., M] formula -- values, gradients, codes, gradcheck in float64 -- on MLP- and conv-shaped inputs
with several task segments; the inference path keeps nothing for backward; ``auto`` falls back to eager."""
from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from mtlbench.cli import app
from mtlbench.taan import (
    AdaptiveActivation,
    activation,
    adaptive_activation,
    compiled,
    eager,
    naive_adaptive_activation,
    uniform_grid,
)
from mtlbench.taan.layout import Layout, row_blocks

F64 = torch.float64
MLP = ((40, 33), [(2, 12), (0, 9), (1, 19)])                      # dense rows, tasks out of order
CONV = ((14, 3, 7, 6), [(1, 4), (0, 3), (2, 0), (1, 2), (2, 5)])  # [N, C, H, W], a task twice, an empty block


def case(shape, dtype, use_grid, seed=0, m=9, n_tasks=3):
    """z (some entries exactly on hinges, at 0, and long runs of one value as on an image's background),
    alpha, sorted b (a uniform grid or random with a repeated hinge), grid, upstream gradient."""
    g = torch.Generator().manual_seed(seed)
    z = (torch.randn(shape, generator=g) * 2).to(dtype)
    if use_grid:
        b = torch.linspace(-3, 3, m, dtype=dtype)
    else:
        b = torch.sort(torch.randn(m, generator=g) * 1.5).values.to(dtype)
        b[4] = b[3]
    flat = z.view(-1)
    flat[: 2 * m: 2] = b
    flat[-3:] = 0.0
    flat[40:90] = 0.37
    alpha = torch.randn(n_tasks, m, generator=g).to(dtype)
    g_out = torch.randn(shape, generator=g).to(dtype)
    return z, alpha, b, (uniform_grid(b) if use_grid else None), g_out


def value_and_grads(fn, z, alpha, b, g_out):
    z, alpha, b = (t.detach().clone().requires_grad_(True) for t in (z, alpha, b))
    y = fn(z, alpha, b)
    return (y, *torch.autograd.grad(y, (z, alpha, b), g_out))


def kernel_fn(kernel, segments, grid):
    return lambda z, a, b: adaptive_activation(z, a, b, segments, grid, kernel=kernel)


def tolerances(dtype):
    return {"rtol": 1e-12, "atol": 1e-12} if dtype == F64 else {"rtol": 1e-6, "atol": 1e-5}


@pytest.mark.parametrize("shape,segments", [MLP, CONV], ids=["mlp", "conv"])
@pytest.mark.parametrize("dtype,use_grid", [(F64, True), (F64, False), (torch.float32, True)])
def test_compiled_equals_eager_and_naive_in_value_and_gradient(shape, segments, dtype, use_grid):
    z, alpha, b, grid, g_out = case(shape, dtype, use_grid)
    got = value_and_grads(kernel_fn("compiled", segments, grid), z, alpha, b, g_out)
    ref = value_and_grads(kernel_fn("eager", segments, grid), z, alpha, b, g_out)
    naive = value_and_grads(lambda *a: naive_adaptive_activation(*a, segments), z, alpha, b, g_out)
    for name, c, e, n in zip(["value", "d_z", "d_alpha", "d_b"], got, ref, naive):
        assert c.dtype == dtype and c.shape == e.shape
        torch.testing.assert_close(c, e, **tolerances(dtype), msg=lambda m, k=name: f"{k} vs eager: {m}")
        torch.testing.assert_close(c, n, **tolerances(dtype), msg=lambda m, k=name: f"{k} vs naive: {m}")


@pytest.mark.parametrize("use_grid", [True, False])
def test_compiled_and_eager_codes_are_identical(use_grid):
    """Either kernel can run the backward of the other's forward because their codes agree bit for bit."""
    z, alpha, b, grid, _ = case(CONV[0], torch.float32, use_grid, seed=3)
    x2 = z.reshape(z.shape[0], -1)
    lay = Layout.build(alpha, b, row_blocks(CONV[1], z.shape[0], 3), grid, x2.dtype, x2.device)
    y_c, codes_c = compiled.forward(x2, lay)
    y_e, codes_e = eager.forward(x2, lay)
    assert codes_c.dtype == codes_e.dtype == torch.uint8
    assert torch.equal(codes_c, codes_e)
    torch.testing.assert_close(y_c, y_e, rtol=1e-6, atol=1e-5)
    g = torch.randn_like(x2)
    dx_c, sums_c = compiled.backward(g, x2, codes_e, lay, True, True)
    dx_e, sums_e = eager.backward(g, x2, codes_c, lay, True, True)
    assert torch.equal(dx_c, dx_e)  # one gather and one product: no rounding to differ in
    torch.testing.assert_close(sums_c, sums_e, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("use_grid", [True, False])
def test_compiled_gradcheck_float64(use_grid):
    b = (torch.linspace(-2, 2, 6, dtype=F64) if use_grid
         else torch.tensor([-1.7, -0.4, 0.3, 0.9, 2.2], dtype=F64))
    g = torch.Generator().manual_seed(4)
    x = torch.randn(6, 2, 5, generator=g, dtype=F64) * 2
    kinks = torch.cat([b, torch.zeros(1, dtype=F64)])
    x = torch.where((x[..., None] - kinks).abs().min(-1).values < 1e-3, x + 0.01, x)  # no kink within eps
    alpha = torch.randn(3, b.numel(), generator=g, dtype=F64)
    segments = [(2, 2), (0, 3), (1, 1)]
    grid = uniform_grid(b) if use_grid else None
    fn = kernel_fn("compiled", segments, grid)
    inputs = (x.requires_grad_(True), alpha.requires_grad_(True), b.clone().requires_grad_(True))
    assert torch.autograd.gradcheck(fn, inputs)


@pytest.mark.parametrize("kernel", ["eager", "compiled"])
@pytest.mark.parametrize("shape,segments", [MLP, CONV], ids=["mlp", "conv"])
def test_inference_saves_nothing_for_backward(kernel, shape, segments):
    z, alpha, b, grid, _ = case(shape, torch.float32, True, seed=5)
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with torch.no_grad():
            z.requires_grad_(True)
            y = adaptive_activation(z, alpha.requires_grad_(True), b, segments, grid, kernel)
        y_frozen = adaptive_activation(z.detach(), alpha.detach(), b, segments, grid, kernel)
    assert saved == [] and y.grad_fn is None and y_frozen.grad_fn is None
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y_train = adaptive_activation(z, alpha, b, segments, grid, kernel)
    assert saved, "the training path must keep x and the codes"
    torch.testing.assert_close(y, y_train.detach(), rtol=0, atol=0)
    torch.testing.assert_close(y_frozen, y_train.detach(), rtol=0, atol=0)


def test_deterministic_mode_keeps_the_compiled_backward_and_its_bits():
    z, alpha, b, grid, g_out = case(CONV[0], torch.float32, True, seed=6)
    fn = kernel_fn("compiled", CONV[1], grid)
    free = value_and_grads(fn, z, alpha, b, g_out)
    before = (torch.are_deterministic_algorithms_enabled(),
              torch.is_deterministic_algorithms_warn_only_enabled())
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        strict = value_and_grads(fn, z, alpha, b, g_out)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()  # restored as it was
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
    for f, s in zip(free, strict):
        assert torch.equal(f, s)


def test_auto_picks_compiled_for_large_inputs_only(monkeypatch):
    big, small = torch.zeros(4, compiled.MIN_ELEMENTS // 4), torch.zeros(4, 8)
    monkeypatch.setattr(activation, "_compile_failure", [])
    assert activation.use_compiled("auto", big) and not activation.use_compiled("auto", small)
    assert activation.use_compiled("compiled", small) and not activation.use_compiled("eager", big)
    with pytest.raises(ValueError, match="kernel must be one of"):
        activation.use_compiled("fast", big)


def test_auto_falls_back_to_eager_once_with_a_warning(monkeypatch):
    """No C++ compiler (or Triton): the first failed compile warns once, then everything runs eager."""
    calls = []

    def broken(*args):
        calls.append(1)
        raise RuntimeError("no working C++ compiler found\nlong details")

    monkeypatch.setattr(activation, "_compile_failure", [])
    monkeypatch.setattr(compiled, "MIN_ELEMENTS", 1)
    monkeypatch.setattr(compiled, "forward", broken)
    z, alpha, b, grid, g_out = case(MLP[0], F64, True, seed=7)
    message = r"torch.compile failed \(RuntimeError: no working C\+\+ compiler found\)"
    with pytest.warns(RuntimeWarning, match=message):
        got = value_and_grads(kernel_fn("auto", MLP[1], grid), z, alpha, b, g_out)
    again = value_and_grads(kernel_fn("auto", MLP[1], grid), z, alpha, b, g_out)  # no second attempt
    assert len(calls) == 1
    ref = value_and_grads(kernel_fn("eager", MLP[1], grid), z, alpha, b, g_out)
    for g_, a_, r_ in zip(got, again, ref):
        assert torch.equal(g_, r_) and torch.equal(a_, r_)
    with pytest.raises(RuntimeError, match="no working C"):  # an explicit choice is not second-guessed
        adaptive_activation(z.requires_grad_(True), alpha, b, MLP[1], grid, kernel="compiled")


def test_module_and_method_carry_the_kernel_option():
    act = AdaptiveActivation(2, 5, kernel="eager")
    assert act.kernel == "eager" and "kernel=eager" in repr(act)
    with pytest.raises(ValueError, match="kernel must be one of"):
        AdaptiveActivation(2, 5, kernel="fast")


def test_bad_kernel_in_a_spec_is_refused_in_one_line(write_spec):
    path = write_spec("""\
name: bad
data:
  dataset: synthetic_vector
  options: {input_dim: 16, n_examples: 200}
methods:
  - name: taan
    params: {M: 8, kernel: fast}
training:
  iterations: 5
""")
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    output = result.output.replace(str(path.parent) + "/", "")
    assert "spec.yaml:7: methods[0].params.kernel: expected: " in output
    assert "'auto', 'compiled' or 'eager'" in result.output
