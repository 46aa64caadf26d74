"""VideoMAE and TimeSformer: parity with transformers' own classes, Hugging Face checkpoint directories,
every method on them, and the attention explanations. Tiny configs (hidden 32, 2 blocks, 4 frames of 32 px)."""
import dataclasses
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

import vjx
from vjx import attribution
from vjx.attribution import attention

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
from vjx.torch_reference.parity import compare_models, randomize_torch_model  # noqa: E402
from vjx.torch_reference.video_transformers import torch_model  # noqa: E402

NAMES = ("videomae", "timesformer")
TINY = dict(hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, patch_size=8, num_frames=4, image_size=32)
NUM_CLASSES = 5


def tiny_twin(name: str, seed: int = 1):
    spec = dataclasses.replace(vjx.get_spec(name).with_settings(**TINY), num_classes=NUM_CLASSES,
                               class_names=tuple(f"action {i}" for i in range(NUM_CLASSES)))
    return randomize_torch_model(torch_model(name, NUM_CLASSES, spec=spec), seed=seed)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """name -> (torch twin, its save_pretrained directory, the vjx.Model loaded from it)."""
    out = {}
    for name in NAMES:
        twin, path = tiny_twin(name), tmp_path_factory.mktemp(name)
        twin.save_pretrained(path)
        out[name] = twin, str(path), vjx.load_model(name, checkpoint=path)
    return out


def clips(batch: int = 2) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(batch, 4, 32, 32, 3)).astype(np.float32)


@pytest.mark.parametrize("name", NAMES)
def test_parity_with_transformers(checkpoints, name):
    """Logits, input gradients and every attention map against transformers' class, float32."""
    twin, _, model = checkpoints[name]
    assert (model.spec.num_frames, model.spec.crop, model.spec.labels[1]) == (4, 32, "action 1")
    video = clips()
    parity = compare_models(twin, model.apply_fn, model.variables, video)
    assert parity.max_abs_diff <= 1e-4 * parity.logit_scale and parity.grad_cosine >= 0.999, parity
    with torch.no_grad():
        ours = model.apply_fn(model.variables, video, mutable=["attention"])[1]["attention"]
        theirs = type(twin).__mro__[2].forward(twin, pixel_values=torch.from_numpy(video.transpose(0, 1, 4, 2, 3)),
                                               output_attentions=True).attentions
    key = "attention" if name == "videomae" else "spatial"     # transformers returns TimeSformer's space maps
    for i, expected in enumerate(theirs):
        np.testing.assert_allclose(ours[f"layer_{i}"][key][0], expected.numpy(), atol=1e-5)


def test_original_videomae_names_and_pytorch_bin(checkpoints, tmp_path):
    """The hub's VideoMAE files keep q_bias / v_bias; a pytorch_model.bin reads like safetensors."""
    twin, path, model = checkpoints["videomae"]
    state = {k.replace("attention.attention.query.bias", "attention.attention.q_bias")
              .replace("attention.attention.value.bias", "attention.attention.v_bias"): v
             for k, v in twin.state_dict().items()}
    torch.save(state, tmp_path / "pytorch_model.bin")
    (tmp_path / "config.json").write_text(open(os.path.join(path, "config.json")).read())
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(
        {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.25, 0.25], "size": {"shortest_edge": 40}}))
    again = vjx.load_model("videomae", checkpoint=tmp_path)
    assert (again.spec.mean, again.spec.std, again.spec.resize) == ((0.5,) * 3, (0.25,) * 3, 40)
    np.testing.assert_array_equal(again(clips()), model(clips()))


def test_converted_checkpoint_survives_orbax(checkpoints, tmp_path):
    import weight_conversion as wc

    _, _, model = checkpoints["timesformer"]
    wc.save_checkpoint(tmp_path / "ckpt", model.variables, model.spec)
    restored = vjx.load_model("timesformer", checkpoint=tmp_path / "ckpt")
    assert restored.spec == model.spec
    np.testing.assert_array_equal(restored(clips()), model(clips()))


def _copy_checkpoint(path, target, *, config=None, state=None):
    from safetensors.numpy import load_file, save_file

    target.mkdir()
    config = config or json.load(open(os.path.join(path, "config.json")))
    (target / "config.json").write_text(json.dumps(config))
    tensors = load_file(os.path.join(path, "model.safetensors"))
    save_file(state(tensors) if state else tensors, str(target / "model.safetensors"))
    return target


def test_bad_checkpoints_name_what_is_wrong(checkpoints, tmp_path):
    _, path, model = checkpoints["videomae"]
    config = json.load(open(os.path.join(path, "config.json")))
    key = "videomae.encoder.layer.1.intermediate.dense.weight"
    (_copy_checkpoint(path, tmp_path / "a") / "config.json").unlink()
    cases = {
        "no config": (tmp_path / "a", "videomae", r"nor a Hugging Face one \(no config.json\)"),
        "unknown family": (_copy_checkpoint(path, tmp_path / "b", config={**config, "model_type": "vivit"}),
                           "videomae", r"'vivit' model, a family vjx does not have; .*timesformer, videomae"),
        "misshapen": (_copy_checkpoint(path, tmp_path / "c", state=lambda t: {**t, key: t[key][:, :16].copy()}),
                      "videomae", rf"tensor '{key}' has shape \(64, 16\)"),
        "missing": (_copy_checkpoint(path, tmp_path / "d", state=lambda t: {k: v for k, v in t.items() if k != key}),
                    "videomae", rf"missing '{key}'"),
        "other family": (checkpoints["timesformer"][1], "videomae", r"holds a timesformer model, not videomae_base"),
    }
    for what, (directory, name, message) in cases.items():
        with pytest.raises(vjx.VjxError, match=message):
            vjx.load_model(name, checkpoint=directory)
    with pytest.raises(vjx.VjxError, match=r"built for clips of 4 frames of 32x32 .*num_frames"):
        model(np.zeros((1, 8, 32, 32, 3), np.float32))


def test_convert_cli_refuses_a_bad_directory_in_one_line(checkpoints, tmp_path):
    _, path, _ = checkpoints["timesformer"]
    bad = _copy_checkpoint(path, tmp_path / "bad", state=lambda t: {
        k: (v[:, :1] if k == "timesformer.embeddings.time_embeddings" else v) for k, v in t.items()})
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "weight_conversion.convert", "--arch", "timesformer",
                           "--checkpoint", str(bad), "--output", str(out)], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "timesformer.embeddings.time_embeddings" in proc.stderr
    assert not out.exists()


@pytest.mark.parametrize("name", NAMES)
def test_every_method_runs_on_the_transformers(checkpoints, name):
    """Maps B x T x H x W in [0, 1] from every method, through the same taps as the CNNs. The path
    methods and extremal perturbation only call the model, so one transformer (TimeSformer, whose
    token order is the harder one) runs them, to keep the suite fast; SmoothGrad's batched pass is
    integrated gradients' (``_stacked_gradients``), so IG stands for both."""
    _, _, model = checkpoints[name]
    video, targets = clips(), np.array([1, 3])
    runs = {
        "grad": lambda: attribution.gradient(model, video, targets),
        "integrated_grad": lambda: attribution.integrated_gradients(
            model, video, targets, attribution.IntegratedGradientsConfig(steps=2, batch_size=1)),
        "grad_cam": lambda: attribution.grad_cam(model, video, targets),
        "attention_rollout": lambda: attribution.attention_rollout(model, video, targets),
        "attention_relevance": lambda: attribution.attention_relevance(model, video, targets),
    }
    if name == "videomae":
        runs = {method: run for method, run in runs.items() if method != "integrated_grad"}
    for method, run in runs.items():
        maps = np.asarray(run().maps)
        assert maps.shape == (2, 4, 32, 32) and np.isfinite(maps).all(), method
        assert maps.min() >= 0 and 0.5 < maps.max() <= 1 + 1e-6, method      # bilinear upsampling may miss the peak
    if name == "videomae":
        return
    # STEP's ellipsoid needs 7 frames; 3D-EP runs the same optimisation on these 4
    result = attribution.ep3d(model, video[:1], targets[:1], attribution.ExtremalConfig(
        areas=(0.1,), num_iter=2, sigma=5.0))
    assert np.asarray(result.masks).shape == (1, 1, 4, 32, 32)


def test_attention_methods_refuse_a_cnn(planted):
    with pytest.raises(vjx.VjxError, match="attention maps; planted has none"):
        attribution.attention_rollout(planted, np.zeros((1, 8, 16, 16, 3), np.float32), [0])


def _random_stochastic(rng, shape):
    a = rng.uniform(size=shape)
    return a / a.sum(-1, keepdims=True)


def test_divided_rollout_is_the_product_of_full_token_matrices():
    """TimeSformer's time and space maps, placed into full (1 + P T)^2 token matrices by hand and
    multiplied, give the class token's row that the row-vector propagation computes."""
    rng = np.random.default_rng(0)
    b, t, h, w, depth = 1, 3, 2, 2, 2
    p = h * w
    blocks = [{"temporal": _random_stochastic(rng, (b * p, t, t)),
               "spatial": _random_stochastic(rng, (b * t, 1 + p, 1 + p))} for _ in range(depth)]
    index = lambda q, f: 1 + q * t + f  # noqa: E731  (patch, frame) order after the class token
    total = np.eye(1 + p * t)
    for block in blocks:
        time, space = np.eye(1 + p * t), np.zeros((1 + p * t, 1 + p * t))
        for q in range(p):
            for f in range(t):
                for g in range(t):
                    time[index(q, f), index(q, g)] = block["temporal"][q, f, g]
        for f in range(t):
            a = block["spatial"][f]
            space[0, 0] += a[0, 0] / t
            for q in range(p):
                space[0, index(q, f)] = a[0, 1 + q] / t
                space[index(q, f), 0] = a[1 + q, 0]
                for r in range(p):
                    space[index(q, f), index(r, f)] = a[1 + q, 1 + r]
        half = lambda m: 0.5 * m + 0.5 * np.eye(len(m))  # noqa: E731
        total = half(space) @ half(time) @ total
    expected = total[0, 1:].reshape(h, w, t).transpose(2, 0, 1)
    ours = attention._propagate([{k: jax.numpy.asarray(v) for k, v in blk.items()} for blk in blocks], (t, h, w), b,
                                structure="divided", alpha=0.5, beta=0.5, untouched=1.0, mean_pooled=False)
    np.testing.assert_allclose(ours[0], expected, rtol=1e-5)


def test_explain_run_on_a_hugging_face_checkpoint(checkpoints, planted_videos, tmp_path):
    """A user's whole run: a checkpoint directory, a clip, an attention method -> files. The clip is
    prepared by the checkpoint's spec (4 frames of 32 px), not the registry's (16 of 224)."""
    from vjx import pipeline

    _, path, _ = checkpoints["videomae"]
    request = pipeline.Request(videos=(planted_videos[0],), model="videomae", checkpoint=path,
                               method="attention_relevance", output_dir=str(tmp_path / "out"), progress=False)
    summary = pipeline.explain(request)
    (video,) = summary["videos"]
    assert video["target_name"].startswith("action ")
    with pytest.raises(vjx.VjxError, match="attention maps, which r3d_18 does not have"):
        pipeline.resolve(dataclasses.replace(request, model="r3d", checkpoint=None))
