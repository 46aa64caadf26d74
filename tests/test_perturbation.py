"""The extremal-perturbation pieces against their torch twins (fp32), and the whole loop of each method."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vjx.attribution.perturbation import loop, losses, mask, optim, pyramid
from vjx.attribution.perturbation.config import ExtremalConfig, resolve
from vjx.attribution.perturbation.loop import temporal_kernel

torch = pytest.importorskip("torch")
tp = pytest.importorskip("vjx.torch_reference.perturbation")


def _seeds(rng, shape):
    """Random seeds with the corner cases: a frame of ones (the start) and rows clamped to 0."""
    s = rng.uniform(size=shape).astype(np.float32)
    s[0] = 1
    s[1, :2] = 0
    return s


@pytest.mark.parametrize("size,sigma,frames,check_grad", [(112, 11.0, 2, True), (224, 23.0, 1, False),
                                                         (40, 5.0, 3, True), (56, 10.6, 2, True),
                                                         (56, 16.5, 2, False)])
def test_mask_generator_matches_torch(size, sigma, frames, check_grad):
    """Also at non-integer sigma, where the original keeps the unrounded sigma in the kernel weights
    and rounds it only for the crop (16.5 rounds to 16)."""
    rng = np.random.default_rng(size)
    g = mask.MaskGeometry(size, size, 7, sigma)
    ref = tp.MaskGenerator((size, size), 7, sigma)
    assert g.seed_shape == tuple(ref.shape_in) and g.padded_shape == tuple(ref.shape_out)
    seeds = _seeds(rng, (max(frames, 2), *g.seed_shape))[-frames:]
    cot = rng.normal(size=(frames, *g.padded_shape)).astype(np.float32)

    @jax.jit
    def generate_and_grad(s):
        (cropped, padded), vjp = jax.vjp(lambda s: mask.generate(s, g), s)
        return cropped, padded, vjp((jnp.zeros_like(cropped), jnp.asarray(cot)))[0]

    if check_grad:
        cropped, padded, grad = generate_and_grad(jnp.asarray(seeds))
    else:
        cropped, padded = jax.jit(lambda s: mask.generate(s, g))(jnp.asarray(seeds))
    t_cropped, t_padded = ref.generate(torch.tensor(seeds[:, None]))
    np.testing.assert_allclose(cropped, t_cropped[:, 0].numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(padded, t_padded[:, 0].numpy(), atol=1e-5, rtol=0)
    if not check_grad:
        return
    # gradients sum ~10^4 products: both float32 sides differ from float64 by ~1e-5 relative
    # (torch's by more), so compare with torch in float64
    ref.weight = ref.weight.double()
    t_seeds = torch.tensor(seeds[:, None].astype(np.float64), requires_grad=True)
    (ref.generate(t_seeds)[1][:, 0] * torch.tensor(cot, dtype=torch.float64)).sum().backward()
    t_grad = t_seeds.grad[:, 0].numpy()
    np.testing.assert_allclose(grad, t_grad, atol=1e-5 * np.abs(t_grad).max(), rtol=0)


def test_sizes_follow_the_original_at_112_and_224():
    g112, g224 = mask.MaskGeometry(112, 112, 7, 11.0), mask.MaskGeometry(224, 224, 7, 23.0)
    assert (g112.seed_shape, g112.padded_shape, g112.margin) == ((16, 16), (134, 134), 11)
    assert (g224.seed_shape, g224.padded_shape, g224.margin) == ((32, 32), (260, 260), 23)


@pytest.mark.parametrize("kind", ["blur", "fade"])
def test_pyramid_and_level_interpolation_match_torch(kind):
    rng = np.random.default_rng(1)
    video = rng.normal(size=(1, 3, 40, 36, 3)).astype(np.float32)
    pyr = pyramid.build_pyramid(jnp.asarray(video), kind=kind)
    ref = tp.Perturbation(torch.tensor(video[0]).permute(0, 3, 1, 2), kind=kind)
    np.testing.assert_allclose(pyr[0], ref.pyramid.permute(0, 1, 3, 4, 2).numpy(), atol=1e-5, rtol=0)
    np.testing.assert_array_equal(pyr[:, :, -1], video)           # level L-1 is the frame
    m = rng.uniform(size=(1, 3, 40, 36)).astype(np.float32)
    m[0, 0, :5], m[0, 0, 5:10], m[0, 1, :3] = 1, 0, 3 / 7                # ends and exact levels
    out = pyramid.apply_mask(pyr, jnp.asarray(m))
    t_m = torch.tensor(m[0][:, None], requires_grad=True)
    t_out = ref.apply(t_m)
    np.testing.assert_allclose(out[0], t_out.permute(0, 2, 3, 1).detach().numpy(), atol=1e-5, rtol=0)
    cot = rng.normal(size=out.shape).astype(np.float32)
    grad = jax.grad(lambda m: jnp.sum(pyramid.apply_mask(pyr, m) * cot))(jnp.asarray(m))
    (t_out * torch.tensor(cot[0]).permute(0, 3, 1, 2)).sum().backward()
    np.testing.assert_allclose(grad[0], t_m.grad[:, 0].numpy(), atol=1e-5, rtol=0)


def test_blur_is_zero_padded_and_normalised():
    flat = jnp.ones((1, 1, 64, 64, 1))
    strongest = pyramid.build_pyramid(flat)[0, 0, 0, :, :, 0]
    assert abs(float(strongest[32, 32]) - float(strongest[31, 32])) < 1e-3     # normalised, symmetric
    assert float(strongest[0, 0]) < 0.3                                       # zeros leak in at the corner
    assert len(pyramid.gaussian_kernel(20.0)) == 2 * 80 + 1


@pytest.mark.parametrize("area", [0.05, 0.5])
def test_area_loss_matches_torch(area):
    rng = np.random.default_rng(2)
    values = rng.uniform(size=(2, 999)).astype(np.float32)
    kept = losses.kept_values(999, area)
    loss, grad = jax.value_and_grad(lambda v: jnp.sum(losses.area_loss(v, kept)))(jnp.asarray(values))
    t_values = torch.tensor(values, requires_grad=True)
    t_loss = tp.area_loss(t_values, area).sum()
    t_loss.backward()
    assert abs(float(loss) - float(t_loss.detach())) < 1e-5
    np.testing.assert_allclose(grad, t_values.grad.numpy(), atol=1e-7, rtol=0)


@pytest.mark.parametrize("ties", [False, True])
def test_area_loss_without_a_sort_equals_the_sorting_form(ties):
    """Value and gradient equal mean((sort(v) - ref)^2), ties included (ranked as a stable sort)."""
    rng = np.random.default_rng(4)
    values = rng.uniform(size=(2, 3, 301)).astype(np.float32)
    if ties:
        values = np.round(values * 4) / 4
        values[..., :40], values[..., 40:80] = 0.0, 1.0
    values = jnp.asarray(values)

    def sorting(v, kept):
        ref = (jnp.arange(v.shape[-1]) >= v.shape[-1] - kept).astype(v.dtype)
        return jnp.mean((jnp.sort(v, axis=-1, stable=True) - ref) ** 2, axis=-1)

    for kept in (0, 1, 37, 150, 300, 301):
        loss, grad = jax.value_and_grad(lambda v: losses.area_loss(v, kept).sum())(values)
        want, want_grad = jax.value_and_grad(lambda v: sorting(v, kept).sum())(values)
        assert float(loss) == pytest.approx(float(want), rel=1e-6, abs=1e-6)
        np.testing.assert_allclose(grad, want_grad, atol=1e-8)


def test_step_loss_matches_torch_and_ignores_the_shuffle():
    rng = np.random.default_rng(3)
    padded = rng.uniform(size=(2, 9, 50, 50)).astype(np.float32)
    top_k = losses.kept_cores(0.1, 9, (50, 50))
    assert losses.core_ones() == 443 and losses.ellipsoid_kernel().shape == (7, 11, 11)

    def f(p, key):
        return jnp.sum(losses.step_loss(p, jnp.int32(top_k), key))

    loss, grad = jax.value_and_grad(f)(jnp.asarray(padded), jax.random.key(0))
    t_padded = torch.tensor(padded, requires_grad=True)
    t_loss = tp.step_loss(t_padded, 0.1).sum()
    t_loss.backward()
    assert abs(float(loss) - float(t_loss.detach())) < 1e-5
    np.testing.assert_allclose(grad, t_padded.grad.numpy(), atol=1e-6, rtol=0)
    assert float(f(jnp.asarray(padded), jax.random.key(7))) == pytest.approx(float(loss), abs=1e-6)
    assert float(f(jnp.asarray(padded), None)) == pytest.approx(float(loss), abs=1e-6)


def test_step_loss_tie_breaking_follows_the_key():
    """All responses tie at the start (masks of ones): which ones get the 'pull to 1' gradient is random."""
    padded = jnp.full((1, 7, 22, 22), 0.5)
    grad = jax.grad(lambda p, k: jnp.sum(losses.step_loss(p, jnp.int32(1), k)))
    g0, g1 = grad(padded, jax.random.key(0)), grad(padded, jax.random.key(1))
    np.testing.assert_array_equal(g0, grad(padded, jax.random.key(0)))
    assert not np.array_equal(g0, g1)


def test_sgd_matches_torch_sgd_with_dampening():
    rng = np.random.default_rng(4)
    start = rng.uniform(size=(5, 6)).astype(np.float32)
    grads = [rng.normal(size=(5, 6)).astype(np.float32) for _ in range(5)]
    opt = optim.torch_sgd(0.05, 0.9, 0.9)
    params, state = jnp.asarray(start), opt.init(jnp.asarray(start))
    t_params = torch.tensor(start, requires_grad=True)
    t_opt = tp.sgd([t_params])
    for g in grads:
        params, state = optim.clamped_step(opt, params, jnp.asarray(g), state)
        t_params.grad = torch.tensor(g)
        t_opt.step()
        t_params.data = t_params.data.clamp(0, 1)
        np.testing.assert_allclose(params, t_params.detach().numpy(), atol=1e-6, rtol=0)
    # the first step uses the raw gradient: lr * g, not lr * 0.1 * g
    first, _ = opt.update(jnp.ones(3), opt.init(jnp.ones(3)))
    np.testing.assert_allclose(first, -0.05 * np.ones(3), rtol=1e-6)


def test_temporal_kernel_rows_are_normalised_gaussians():
    k = temporal_kernel(6, 1.0)
    np.testing.assert_allclose(k.sum(axis=1), 1, rtol=1e-6)
    assert k[2, 2] > k[2, 3] > k[2, 4] > 0 and k[2, 3] == pytest.approx(k[2, 1])


# A small linear classifier, identical in both frameworks: logits = <W_c, video> + b_c.
T, S, CLASSES = 8, 28, 3


def _linear_model(rng):
    w = (rng.normal(size=(T, S, S, 3, CLASSES)) * 0.02).astype(np.float32)
    b = np.zeros(CLASSES, np.float32)

    def apply_fn(variables, video):
        return jnp.einsum("bthwc,thwck->bk", video, variables["w"], precision="highest") + variables["b"]

    def torch_model(x):                       # N x C x T x H x W
        return torch.einsum("ncthw,thwck->nk", x, torch.tensor(w)) + torch.tensor(b)

    return apply_fn, {"w": w, "b": b}, torch_model


def _optimize(method, areas, num_iter, geometry_sigma, init, step_start=10, **overrides):
    """vjx's loop on the linear model from the given seeds ``A x T x h x w``: (evaluation, history)."""
    config, geometry = resolve(method, ExtremalConfig(areas=areas, schedule="original", num_iter=num_iter, sigma=geometry_sigma,
                                                      step_start=step_start, **overrides), T, S, S)
    evaluation, history, _, _ = loop.optimize(_LINEAR_APPLY, loop.Problem.of(method, geometry, config), areas,
                                           _LINEAR_VARIABLES, jnp.asarray(_VIDEO), jnp.asarray([1]),
                                           jax.random.key(0), init=jnp.asarray(init[:, None]))
    return evaluation, history


_RNG = np.random.default_rng(5)
_LINEAR_APPLY, _LINEAR_VARIABLES, _LINEAR_TORCH = _linear_model(_RNG)
_VIDEO = _RNG.normal(size=(1, T, S, S, 3)).astype(np.float32)
_INIT = _RNG.uniform(0.2, 1, size=(2, T, *mask.MaskGeometry(S, S, 7, 5.0).seed_shape)).astype(np.float32)


@pytest.mark.parametrize("method", ["ep3d", "ep2d", "step"])
def test_full_loop_matches_torch_reference(method):
    """50 iterations of two areas, JAX (areas vmapped) vs the torch loop (one area after another).

    Both start from the same random seeds. From the original's all-ones start every frame's mask is
    identical and the first area-loss sort is all ties, so the first step depends on the sort's tie
    order (torch's default sort does not even specify it); a generic start tests the computation.
    STEP's loss starts at iteration 3, inside the window compared tightly. The reward weight is 1:
    at 100 this linear model drives seeds to the clamp within two steps, and rounding then reorders
    exactly-tied mask values in the sort differently in each framework.
    """
    areas, num_iter = (0.05, 0.2), 50
    evaluation, history = _optimize(method, areas, num_iter, 5.0, _INIT, step_start=3, area_batch=2,
                                    reward_weight=1.0)
    t_masks, t_hist = tp.extremal_loop(_LINEAR_TORCH, torch.tensor(_VIDEO).permute(0, 4, 1, 2, 3), 1, areas,
                                       method=method, num_iter=num_iter, sigma=5.0, init=_INIT,
                                       step_start=3, reward_weight=1.0)
    for name in t_hist:
        np.testing.assert_allclose(history[name][:5, :, 0].T, t_hist[name][:, :5], rtol=1e-5, atol=1e-6)
        # later, near-ties in the area sort let single pixels swap places for an iteration or two
        np.testing.assert_allclose(history[name][:, :, 0].T, t_hist[name], rtol=2e-2, atol=1e-4)
    difference = np.abs(np.asarray(evaluation.masks[:, 0]) - t_masks.numpy())
    assert difference.mean() < 1e-3 and difference.max() < 0.05, (difference.mean(), difference.max())
    assert float(jnp.abs(evaluation.masks[0] - evaluation.masks[1]).max()) > 0.05   # the two areas differ


def test_python_driven_steps_equal_one_scan():
    """The CPU way (one iteration per compiled call, areas in turn) and the accelerator way (one scan,
    areas vmapped) run the same body: the same masks and history."""
    stepped, h_stepped = _optimize("step", (0.05, 0.2), 20, 5.0, _INIT, area_batch=1, iterations_per_call=1)
    scanned, h_scanned = _optimize("step", (0.05, 0.2), 20, 5.0, _INIT, area_batch=2, iterations_per_call=20)
    np.testing.assert_allclose(stepped.masks, scanned.masks, atol=1e-5)
    for name in h_scanned:
        np.testing.assert_allclose(h_stepped[name], h_scanned[name], rtol=1e-5, atol=1e-6)


def test_warm_start_seeds_sit_on_the_map_s_top_cells():
    """Seeds start at 1 on the top ``a`` of the cells (per frame for 2D-EP), ranked by the map's mean
    around each seed point, and at 0 elsewhere."""
    from vjx.attribution.perturbation import warm_start

    g = mask.MaskGeometry(32, 32, 4, 3.0)
    saliency = np.zeros((1, 2, 32, 32), np.float32)
    saliency[0, 0, 6:14, 10:18] = 1.0       # the cells around seed points (2..3, 3..4) of frame 0 (pixels 4i +- 2)
    seeds = np.asarray(warm_start.seeds_from_map(jnp.asarray(saliency), (4 / 128,), g, per_frame=False))
    assert seeds.shape == (1, 1, 2, 8, 8) and seeds.sum() == 4
    assert seeds[0, 0, 0, 2:4, 3:5].sum() == 4
    per_frame = np.asarray(warm_start.seeds_from_map(jnp.asarray(saliency), (4 / 64,), g, per_frame=True))
    assert per_frame[0, 0, 0].sum() == 4 and per_frame[0, 0, 1].sum() == 4
