"""vjx's extremal perturbation against the original-style torch loop on the same workload.

    python -m experiments.benchmark                                   # r2plus1d, STEP, 2 areas, 5 iterations
    python -m experiments.benchmark --arch i3d --method 3d_ep --perturb_area 0.05,0.1 --num_iter 20 --json b.json

The torch side is the reference loop of vjx.torch_reference.perturbation (the original's: one video,
areas one after another, eager PyTorch); vjx runs every area in one compiled call. Both get the same
random weights (torch -> converter -> Flax), the same clip and the same target. Reported: the vjx
first call (compile + run), the vjx steady-state call, the torch run, each per iteration (all areas),
and the ratio. On a GPU machine the torch side uses CUDA when available.
"""
from __future__ import annotations

import platform
import time

import numpy as np
from absl import flags

from experiments import _cli

_ARCH = flags.DEFINE_string("arch", "r2plus1d", "i3d, r2plus1d, r3d, mc3 or tsm.")
_METHOD = flags.DEFINE_string("method", "step", "2d_ep, 3d_ep or step.")
_AREAS = flags.DEFINE_list("perturb_area", ["0.05", "0.1"], "Area ratios in (0, 1).")
_NUM_ITER = flags.DEFINE_integer("num_iter", 5, "Iterations per area.")
_VIDEO = flags.DEFINE_string("video", None, "Clip to explain (default: the bundled Big Buck Bunny clip).")
_SKIP_TORCH = flags.DEFINE_bool("skip_torch", False, "Time vjx only.")
_JSON = flags.DEFINE_string("json", None, "Also write the results here.")

_TORCH_METHOD = {"2d_ep": "2d", "3d_ep": "3d", "step": "step"}


def run() -> dict:
    """Times both implementations; returns the measurements in seconds."""
    import jax
    import torch

    from vjx import data
    from vjx.attribution import ExtremalConfig
    from vjx.errors import ArgumentError, VjxError
    from vjx.models.registry import get_spec
    from vjx.pipeline import methods
    from vjx.pipeline.inputs import model_input
    from vjx.pipeline.request import check_areas
    from vjx.torch_reference.parity import twin_models
    from vjx.torch_reference.perturbation import extremal_loop

    method = methods.get(_METHOD.value)
    if not method.extremal:
        raise ArgumentError("method", f"{_METHOD.value!r} is not an extremal method; choose one of "
                            f"{', '.join(methods.extremal_names())}")
    if _NUM_ITER.value < 1:
        raise VjxError(f"--num_iter must be at least 1, got {_NUM_ITER.value}")
    areas = check_areas(_cli.parse_areas(_AREAS.value))
    spec = get_spec(_ARCH.value)
    video = data.read_video(_VIDEO.value or data.sample_video_path())
    x = model_input(spec, video)[None]
    torch_model, model = twin_models(spec.name)
    target = int(np.argmax(np.asarray(model(x))))
    config = ExtremalConfig(areas=areas, num_iter=_NUM_ITER.value, sigma=spec.ep_sigma)
    fn = method.function
    targets = np.array([target], np.int32)

    def vjx_call() -> float:
        start = time.perf_counter()
        jax.block_until_ready(fn(model, x, targets, config).masks)
        return time.perf_counter() - start

    first_s = vjx_call()
    vjx_s = vjx_call()
    n = _NUM_ITER.value
    result = {"arch": spec.name, "method": _METHOD.value, "areas": list(areas), "num_iter": n,
              "input": "x".join(map(str, x.shape)), "vjx_first_call_s": first_s, "vjx_s": vjx_s,
              "vjx_per_iter_ms": 1e3 * vjx_s / n, "device": str(jax.devices()[0]),
              "machine": platform.processor() or platform.machine(), "jax": jax.__version__,
              "torch": torch.__version__}
    if not _SKIP_TORCH.value:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        torch_model = torch_model.to(device)
        video_t = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 4, 1, 2, 3))).to(device)
        start = time.perf_counter()
        extremal_loop(torch_model, video_t, target, areas, method=_TORCH_METHOD[_METHOD.value], num_iter=n,
                      sigma=spec.ep_sigma)
        if device == "cuda":
            torch.cuda.synchronize()
        torch_s = time.perf_counter() - start
        result.update(torch_s=torch_s, torch_per_iter_ms=1e3 * torch_s / n, torch_device=device,
                      torch_threads=torch.get_num_threads(), speedup=torch_s / vjx_s,
                      speedup_with_compile=torch_s / first_s)
    return result


def main(argv: list[str]) -> None:
    _cli.no_extra_arguments(argv)
    result = run()
    print(f"{result['arch']} {result['method']} {len(result['areas'])} areas x {result['num_iter']} iterations, "
          f"input {result['input']} on {result['device']}")
    print(f"  vjx   first call {result['vjx_first_call_s']:8.2f} s   steady {result['vjx_s']:8.2f} s   "
          f"{result['vjx_per_iter_ms']:9.1f} ms/iteration (all areas)")
    if "torch_s" in result:
        print(f"  torch reference  {result['torch_s']:8.2f} s   {result['torch_per_iter_ms']:9.1f} ms/iteration "
              f"(areas one after another)   speedup {result['speedup']:.2f}x "
              f"({result['speedup_with_compile']:.2f}x counting compilation)")
    if _JSON.value:
        from vjx.pipeline.files import write_json
        write_json(_JSON.value, result)


if __name__ == "__main__":
    _cli.run(main, {**_cli.FLAG_NAMES, "model": "--arch", "method": "--method", "output_dir": "--json"})
