"""Torch reference vs vjx's Flax port on real videos: logits, top-k, input gradients, Grad-CAM.

    python -m experiments.parity --arch r2plus1d --checkpoint r2plus1d_18-91a641e6.pth \\
        --videos_dir ../shared/data/kinetics/sampled_frames --json parity.json
    python -m experiments.parity --arch i3d          # random weights (and BatchNorm statistics)

With --checkpoint the torch reference loads the file strictly and vjx converts it; without, the torch
reference gets random weights (seeded) that are converted. (The bundled pretrained I3D exists only as
Flax variables, so its parity is covered by the converter tests.) Exit code 1 when a measurement is
outside its tolerance, 2 for bad input.
"""
from __future__ import annotations

import sys

import numpy as np
from absl import flags

from experiments import _cli

_ARCH = flags.DEFINE_string("arch", "r2plus1d", "i3d, r2plus1d, r3d, mc3, tsm (or a registry name).")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Torch .pth/.pt/.safetensors (default: random weights).")
_LAYOUT = flags.DEFINE_string("layout", None, "Torch reference state-dict layout for random weights (default: the family's).")
_VIDEOS_DIR = flags.DEFINE_string("videos_dir", None, "Folder of frame folders / video files.")
_VIDEO = flags.DEFINE_string("video", None, "One video (default: the bundled Big Buck Bunny clip).")
_MAX_VIDEOS = flags.DEFINE_integer("max_videos", 2, "Use at most this many videos of --videos_dir.")
_INPUT_SIZE = flags.DEFINE_integer("input_size", None, "Square input crops of this many pixels instead of the "
                                   "model's (smaller is faster; the comparison holds at any size).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the random weights.")
_TOPK = flags.DEFINE_integer("topk", 5, "k of the top-k agreement.")
_TOL_LOGITS = flags.DEFINE_float("tol_logits", 1e-4, "Max |logit diff| / max(1, max |logit|).")
_TOL_GRAD = flags.DEFINE_float("min_grad_cosine", 0.999, "Min input-gradient cosine.")
_TOL_CAM = flags.DEFINE_float("min_cam_corr", 0.99, "Min Grad-CAM map correlation.")
_TOL_TOPK = flags.DEFINE_float("min_topk_agree", 1.0, "Min fraction of videos whose top-k sets agree.")
_JSON = flags.DEFINE_string("json", None, "Also write the measurements here.")


def _torch_layer(torch_model, name: str):
    """The torch module Grad-CAM hooks: the one named ``name`` (case-insensitive, last dotted part)."""
    modules = dict(torch_model.named_modules())
    for full, module in modules.items():
        if full.lower() == name.lower() or full.lower().rsplit(".", 1)[-1] == name.lower():
            return module
    return None


def measure() -> dict:
    """Builds both models, runs them on the videos and returns the measurements."""
    import jax
    import torch

    from vjx import attribution, data
    from vjx.errors import VjxError
    from vjx.model import Model
    from vjx.models.registry import get_spec
    from vjx.pipeline.inputs import model_input
    from vjx.pipeline.request import MIN_INPUT_SIZE
    from vjx.torch_reference import build_torch_model
    from vjx.torch_reference.backprop import grad_cam as torch_grad_cam
    from vjx.torch_reference.parity import compare_models, twin_models
    from weight_conversion import checkpoint_spec, convert_state_dict, detect_layout, load_state_dict

    jax.config.update("jax_default_matmul_precision", "highest")
    spec = get_spec(_ARCH.value)
    if _INPUT_SIZE.value is not None:
        if _INPUT_SIZE.value < MIN_INPUT_SIZE:
            raise VjxError(f"--input_size must be at least {MIN_INPUT_SIZE} pixels, got {_INPUT_SIZE.value}")
        spec = spec.at_size(_INPUT_SIZE.value, spec.ep_sigma)
    if _VIDEO.value and _VIDEOS_DIR.value:
        raise VjxError("pass --video or --videos_dir, not both")
    paths = (data.list_videos(_VIDEOS_DIR.value)[:_MAX_VIDEOS.value] if _VIDEOS_DIR.value
             else [_VIDEO.value or data.sample_video_path()])
    x = np.stack([model_input(spec, data.read_video(p)) for p in paths])
    if _CHECKPOINT.value:
        state = load_state_dict(_CHECKPOINT.value)
        layout = detect_layout(state)
        spec = checkpoint_spec(state, spec)
        variables = convert_state_dict(state, spec, what=f"--checkpoint {_CHECKPOINT.value!r}")
        torch_model = build_torch_model(spec.name, layout=layout.name)
        try:
            torch_model.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()}, strict=True)
        except RuntimeError as e:
            raise VjxError(f"--checkpoint {_CHECKPOINT.value!r} does not fit the torch reference of "
                           f"{spec.name}: {str(e).splitlines()[0]}") from None
        model = Model(spec.make_module(), variables, spec)
    else:
        torch_model, model = twin_models(spec.name, layout=_LAYOUT.value, seed=_SEED.value)
    torch_model.eval()
    parity = compare_models(torch_model, model.apply_fn, model.variables, x, topk=_TOPK.value)
    targets = parity.torch_logits.argmax(1)
    result = {"arch": spec.name, "videos": [str(p) for p in paths], "weights": _CHECKPOINT.value or f"random seed {_SEED.value}",
              "max_abs_logit_diff": parity.max_abs_diff, "logit_scale": parity.logit_scale,
              "relative_logit_diff": parity.max_abs_diff / parity.logit_scale,
              f"top{_TOPK.value}_agree": parity.topk_agree, "grad_cosine": parity.grad_cosine}
    layer = _torch_layer(torch_model, spec.gradcam_layer)
    if layer is None:
        result["gradcam_corr"] = None
    else:
        t_maps, _ = torch_grad_cam(torch_model, torch.from_numpy(np.ascontiguousarray(x.transpose(0, 4, 1, 2, 3))),
                                   torch.from_numpy(targets), layer)
        f_maps = np.asarray(attribution.grad_cam(model, x, targets.astype(np.int32)).maps)
        t_maps = t_maps.detach().numpy()
        corr = [np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(t_maps, f_maps)]
        result["gradcam_corr"] = float(np.nan_to_num(np.min(corr), nan=1.0 if np.allclose(t_maps, f_maps, atol=1e-5) else 0.0))
    return result


def failures(result: dict) -> list[str]:
    """The measurements outside their tolerance, as sentences."""
    bad = []
    if not result["relative_logit_diff"] <= _TOL_LOGITS.value:
        bad.append(f"relative logit diff {result['relative_logit_diff']:.2e} > {_TOL_LOGITS.value:g}")
    if not result["grad_cosine"] >= _TOL_GRAD.value:
        bad.append(f"input-gradient cosine {result['grad_cosine']:.6f} < {_TOL_GRAD.value:g}")
    if not result[f"top{_TOPK.value}_agree"] >= _TOL_TOPK.value:
        bad.append(f"top-{_TOPK.value} agreement {result[f'top{_TOPK.value}_agree']:.2f} < {_TOL_TOPK.value:g}")
    if result["gradcam_corr"] is not None and not result["gradcam_corr"] >= _TOL_CAM.value:
        bad.append(f"Grad-CAM correlation {result['gradcam_corr']:.4f} < {_TOL_CAM.value:g}")
    return bad


def main(argv: list[str]) -> None:
    _cli.no_extra_arguments(argv)
    result = measure()
    bad = failures(result)
    result["pass"] = not bad
    for key, value in result.items():
        if key != "videos":
            print(f"{key:20} {value}")
    if _JSON.value:
        from vjx.pipeline.files import write_json
        write_json(_JSON.value, result)
    if bad:
        print("parity FAILED: " + "; ".join(bad), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    _cli.run(main, {"model": "--arch", "output_dir": "--json"})
