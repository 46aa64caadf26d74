"""TSM: the temporal shift, torch parity for both checkpoint layouts, the layer4 tap, converter errors."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vjx.errors import VjxError
from vjx.models.registry import get_spec
from vjx.models.tsm import temporal_shift

torch = pytest.importorskip("torch")

from vjx.torch_reference import build_torch_model  # noqa: E402
from vjx.torch_reference import tsm as torch_tsm  # noqa: E402
from vjx.torch_reference.parity import compare_models, randomize_torch_model, state_dict_numpy  # noqa: E402
from weight_conversion import convert_state_dict, detect_layout  # noqa: E402

EPIC_WIDTHS = {"noun": 352, "verb": 125}


@pytest.fixture(autouse=True)
def _highest_precision():
    with jax.default_matmul_precision("highest"):
        yield


def _epic_spec(head: str):
    return dataclasses.replace(get_spec("tsm"), label_set=f"epic-kitchens-{head}", num_classes=EPIC_WIDTHS[head])


def _clip(size: int, frames: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((1, frames, size, size, 3)).astype(np.float32)


def _assert_parity(torch_model, spec, variables, clip):
    result = compare_models(torch_model, spec.make_module().apply, variables, clip)
    assert result.max_abs_diff <= 1e-4 * result.logit_scale, (result.max_abs_diff, result.logit_scale)
    assert result.grad_cosine >= 0.999
    assert result.topk_agree == 1.0


@pytest.fixture(scope="module")
def tsm_pair():
    model = randomize_torch_model(build_torch_model("tsm", layout="tsm"), seed=1)
    return model, state_dict_numpy(model)


@pytest.fixture(scope="module")
def epic_pair():
    model = randomize_torch_model(build_torch_model("tsm", 352, layout="tsm_epic"), seed=2)
    return model, state_dict_numpy(model)


def test_shift_matches_hand_written_numpy():
    x = np.random.default_rng(0).standard_normal((2, 5, 3, 2, 16)).astype(np.float32)
    expected = np.zeros_like(x)
    for t in range(5):
        if t + 1 < 5:
            expected[:, t, ..., 0:2] = x[:, t + 1, ..., 0:2]
        if t >= 1:
            expected[:, t, ..., 2:4] = x[:, t - 1, ..., 2:4]
        expected[:, t, ..., 4:] = x[:, t, ..., 4:]
    np.testing.assert_array_equal(np.asarray(temporal_shift(jnp.asarray(x))), expected)


def test_checkpoint_keys_are_the_public_ones(tsm_pair, epic_pair):
    tsm_keys, epic_keys = tsm_pair[1].keys(), epic_pair[1].keys()
    assert {"module.base_model.conv1.weight", "module.base_model.layer1.0.conv1.net.weight",
            "module.base_model.layer4.2.conv3.weight", "module.base_model.layer2.0.downsample.1.running_var",
            "module.new_fc.weight"} <= tsm_keys
    assert {"base_model.layer3.5.conv1.net.weight", "fc_verb.bias", "fc_noun.weight"} <= epic_keys
    assert epic_pair[1]["fc_verb.weight"].shape == (125, 2048)
    assert epic_pair[1]["fc_noun.weight"].shape == (352, 2048)
    assert [detect_layout(sd).name for sd in (tsm_pair[1], epic_pair[1])] == ["tsm", "tsm_epic"]


def test_tsm_layout_parity_and_layer4_tap(tsm_pair):
    model, state = tsm_pair
    spec = get_spec("tsm")
    variables = convert_state_dict(state, spec)
    clip = _clip(112)
    _assert_parity(model, spec, variables, clip)

    taps = {}
    with torch.no_grad():
        model(torch.from_numpy(clip.transpose(0, 4, 1, 2, 3).copy()), taps)
    expected = taps["layer4"].numpy().transpose(0, 2, 3, 1).reshape(1, 8, 4, 4, 2048)
    _, state_out = jax.jit(lambda v, x: spec.make_module().apply(v, x, mutable=["intermediates"]))(variables, clip)
    (got,) = state_out["intermediates"]["layer4"]
    assert got.shape == (1, 8, 4, 4, 2048)
    np.testing.assert_allclose(np.asarray(got), expected, atol=1e-4 * max(1.0, np.abs(expected).max()), rtol=0)


@pytest.mark.parametrize("head, frames", [("noun", 8), ("verb", 4)])
def test_epic_layout_parity_per_head(epic_pair, head, frames):
    """Each head converts on its own; the verb case also runs 4 segments (the shift follows T)."""
    model = torch_tsm.torch_model("tsm_resnet50", EPIC_WIDTHS[head], layout="tsm_epic", num_segments=frames)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in epic_pair[1].items()})
    spec = _epic_spec(head)
    _assert_parity(model.eval(), spec, convert_state_dict(epic_pair[1], spec, head=head), _clip(64, frames, seed=3))


@pytest.mark.parametrize("head, message", [
    (None, r"two heads: pass head='noun' or head='verb'"),
    ("action", r"got head='action'"),
])
def test_epic_needs_a_known_head(epic_pair, head, message):
    with pytest.raises(VjxError, match=message):
        convert_state_dict(epic_pair[1], _epic_spec("noun"), head=head)


def test_single_head_checkpoint_refuses_a_head(tsm_pair):
    with pytest.raises(VjxError, match=r"head='noun' applies to EPIC-Kitchens checkpoints only"):
        convert_state_dict(tsm_pair[1], get_spec("tsm"), head="noun")


def test_head_width_must_match_the_label_set(epic_pair, tsm_pair):
    with pytest.raises(VjxError, match=r"fc_verb has 125 classes but the model expects 352"):
        convert_state_dict(epic_pair[1], _epic_spec("noun"), head="verb")
    with pytest.raises(VjxError, match=r"new_fc has 400 classes but the model expects 352"):
        convert_state_dict(tsm_pair[1], _epic_spec("noun"))


def test_missing_and_unexpected_keys_are_named(tsm_pair):
    state = dict(tsm_pair[1])
    del state["module.base_model.layer3.2.bn2.running_mean"]
    with pytest.raises(VjxError, match=r"missing 'module.base_model.layer3.2.bn2.running_mean'"):
        convert_state_dict(state, get_spec("tsm"), what="ckpt.pth")
    state = dict(tsm_pair[1], **{"module.base_model.extra.weight": np.zeros(3, np.float32)})
    with pytest.raises(VjxError, match=r"unexpected keys .*module.base_model.extra.weight"):
        convert_state_dict(state, get_spec("tsm"))


def test_module_prefix_is_optional(tsm_pair, epic_pair):
    """DataParallel's ``module.`` prefix: TSM's own checkpoints have it, EPIC's hub ones do not."""
    spec = get_spec("tsm")
    bare = {k.removeprefix("module."): v for k, v in tsm_pair[1].items()}
    prefixed_epic = {f"module.{k}": v for k, v in epic_pair[1].items()}
    for original, renamed, kwargs in ((tsm_pair[1], bare, dict(spec=spec)),
                                      (epic_pair[1], prefixed_epic, dict(spec=_epic_spec("verb"), head="verb"))):
        assert detect_layout(renamed).name == detect_layout(original).name
        a = jax.tree_util.tree_leaves(convert_state_dict(original, **kwargs))
        b = jax.tree_util.tree_leaves(convert_state_dict(renamed, **kwargs))
        assert len(a) == len(b) == 53 + 4 * 53 + 2  # conv kernels, BatchNorm scale/bias/mean/var, head
        assert all(np.array_equal(x, y) for x, y in zip(a, b))
