"""VGG16-LSTM: the Flax module against its torch twin with random weights (a narrow config, VGG16's
layer names and count), through the checkpoint converter; the head's size from the checkpoint."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vjx.models.registry import get_spec
from vjx.models.vgg16lstm import VGG16LSTM

torch = pytest.importorskip("torch")

TINY = dict(stages=((4, 4), (8, 8), (8, 8, 8), (8, 8, 8), (8, 8, 8)), fc_width=16, hidden=8)
SIZE, FRAMES, CLASSES = 32, 3, 5


def _pair(detach: bool = True):
    from vjx.torch_reference.vgg16lstm import VGG16LSTM as Twin
    from weight_conversion import common, vgg16lstm

    torch.manual_seed(0)
    twin = Twin(CLASSES, size=SIZE, detach=detach, **TINY).eval()
    with torch.no_grad():
        twin.fc8_final.weight.mul_(20.0)                  # probabilities that differ between classes
    state = {k: v.detach().numpy() for k, v in twin.state_dict().items()}
    module = VGG16LSTM(num_classes=vgg16lstm.head_size(state), detach=detach, **TINY)
    abstract = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, FRAMES, SIZE, SIZE, 3)))
    variables = common.merge_strict(abstract, vgg16lstm.to_flax(state, None))
    return twin, module, variables, state


def test_parity_logits_features_and_input_gradients():
    twin, module, variables, _ = _pair()
    video = np.random.default_rng(0).normal(0, 60, (2, FRAMES, SIZE, SIZE, 3)).astype(np.float32)
    video_t = torch.from_numpy(video.transpose(0, 4, 1, 2, 3).copy()).requires_grad_(True)
    ours, state = module.apply(variables, video, mutable=["intermediates"])
    theirs = twin(video_t)
    theirs_np = theirs.detach().numpy()
    assert np.abs(np.asarray(ours) - theirs_np).max() <= 1e-4 * max(1.0, np.abs(theirs_np).max())
    (features,) = state["intermediates"]["conv5"]
    np.testing.assert_allclose(features, twin.features.detach().numpy().transpose(0, 2, 3, 4, 1), rtol=1e-4,
                               atol=1e-4 * float(twin.features.detach().abs().max()))
    targets = np.array([1, 3])
    theirs[np.arange(2), targets].sum().backward()
    grad_t = video_t.grad.numpy().transpose(0, 2, 3, 4, 1)
    grad = jax.grad(lambda x: module.apply(variables, x)[jnp.arange(2), targets].sum())(video)
    for a, b in zip(np.asarray(grad), grad_t):
        assert a.ravel() @ b.ravel() / np.linalg.norm(a) / np.linalg.norm(b) >= 0.999


def test_detaching_is_a_switch_and_stops_gradients_across_time():
    """The last frame reaches the output through the last step only, either way; the first frame
    reaches later steps (through the recurrent state) only when the state is not detached."""
    video = np.random.default_rng(1).normal(0, 5, (1, FRAMES, SIZE, SIZE, 3)).astype(np.float32)
    _, detached, variables, _ = _pair(True)
    twin, attached, _, _ = _pair(False)
    g_detached, g_attached = (np.asarray(jax.grad(lambda x: m.apply(variables, x)[0, 2])(video))[0]
                              for m in (detached, attached))
    scale = np.abs(g_attached).max()
    np.testing.assert_allclose(g_detached[-1], g_attached[-1], atol=1e-4 * scale)
    assert np.abs(g_detached[0] - g_attached[0]).max() > 1e-2 * np.abs(g_attached[0]).max()
    x_t = torch.from_numpy(video.transpose(0, 4, 1, 2, 3).copy()).requires_grad_(True)
    twin(x_t)[0, 2].backward()
    g_twin = x_t.grad.numpy()[0].transpose(1, 2, 3, 0)
    assert g_attached.ravel() @ g_twin.ravel() / np.linalg.norm(g_attached) / np.linalg.norm(g_twin) >= 0.999


def test_checkpoint_layout_head_size_and_spec():
    import weight_conversion as wc

    *_, state = _pair()
    spec = get_spec("vgg16lstm")
    assert (spec.num_frames, spec.crop, spec.gradcam_layer, spec.label_set, spec.num_classes) == (
        8, 224, "conv5", "ucf101-24", 24)
    pixels = spec.preprocess(np.full((8, 240, 320, 3), 255, np.uint8))
    np.testing.assert_allclose(pixels[0, 0, 0], 255 * (1 - np.array((0.50463, 0.45796, 0.4076))), rtol=1e-5)
    assert wc.detect_layout(state).name == "vgg16lstm"
    assert wc.detect_layout({f"module.{k}": v for k, v in state.items()}).name == "vgg16lstm"
    converted = wc.checkpoint_spec(state, spec)
    assert (converted.num_classes, converted.label_set) == (CLASSES, f"{CLASSES}-classes")
    assert converted.labels == tuple(f"class {i}" for i in range(CLASSES))
    state101 = {**state, "fc8_final.weight": np.zeros((101, 8), np.float32)}
    assert wc.checkpoint_spec(state101, spec).label_set == "ucf101"


@pytest.mark.slow   # every method compiled on a 224-px net (~40 s)
def test_every_registry_method_runs_on_it():
    """The contract's promise for a new model: every per-voxel method a plain CNN takes (not the prototype
    or attention ones) and 3D-EP (the other extremal methods share its loop; STEP needs 7+ frames), with
    the config its entry builds."""
    import dataclasses

    from vjx import pipeline
    from vjx.attribution import registry

    _, module, variables, _ = _pair()
    spec = dataclasses.replace(get_spec("vgg16lstm"), num_frames=FRAMES, resize=SIZE, crop=SIZE, ep_sigma=11.0,
                               num_classes=CLASSES)
    settings = pipeline.Request(videos=(), areas=(0.2,), num_iter=2, num_masks=3, batch=4)
    video = np.random.default_rng(2).normal(0, 5, (1, FRAMES, SIZE, SIZE, 3)).astype(np.float32)
    plain = (e for e in registry.ENTRIES
             if e.output == registry.MAP and not (e.needs_prototype_model or e.needs_attention))
    for entry in (*plain, registry.get("ep3d")):
        config = entry.make_config(settings, spec)
        if hasattr(config, "steps"):
            config = dataclasses.replace(config, steps=2, batch_size=2)
        if hasattr(config, "samples"):
            config = dataclasses.replace(config, samples=2, batch_size=2)
        result = entry.function(module.apply, video, [1], config, variables=variables, key=jax.random.key(0))
        maps = np.asarray(result.masks if entry.output == registry.MASKS else result.maps)
        assert maps.shape[-3:] == (FRAMES, SIZE, SIZE) and np.isfinite(maps).all(), entry.name
