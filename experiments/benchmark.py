"""vjx's extremal perturbation (or a path method) against the original-style torch loop on the same workload.

    python -m experiments.benchmark                                   # r2plus1d, STEP, six areas, 3 iterations
    python -m experiments.benchmark --arch i3d --method 3d_ep --num_iter 3 --json b.json
    python -m experiments.benchmark --arch i3d --cost_only            # XLA's FLOPs/bytes/memory, no timing
    python -m experiments.benchmark --arch r2plus1d --method integrated_grad   # or smooth_grad: 25 points

The torch side is the reference loop of vjx.torch_reference.perturbation: the original's algorithm,
one video, areas one after another, eager PyTorch, gradients for the masks only (the original
freezes the model's parameters). Both sides get the same random weights (torch -> converter -> Flax),
the same clip and the same target. Reported per iteration over all areas: vjx (the median of its
iterations, from its progress reports; on CPU every iteration is its own compiled call), torch
(its run divided by the iterations), their ratio, and vjx's first call (compilation included).

For ``integrated_grad`` and ``smooth_grad`` the torch side is the original's loop: one gradient per
path point (25 by default, ``--num_iter`` sets it), one after another; vjx runs its compiled call
(``--path_batch`` points per forward/backward pass). The original leaves the model's parameters
trainable, so its backward passes compute weight gradients too; the torch loop is timed that way and
again with the parameters frozen (input gradients only, the work vjx does). Reported: the whole call's
seconds on each side (vjx's second call, after compilation) and the ratios.

``--cost`` adds XLA's compiled cost and memory analyses of one iteration with every area vmapped
(the accelerator form): FLOPs and bytes accessed, split into the model's forward+backward and the
mask machinery (the same iteration with a model that costs nothing), and the peak memory.
"""
from __future__ import annotations

import platform
import statistics
import time

import numpy as np
from absl import flags

from experiments import _cli

_ARCH = flags.DEFINE_string("arch", "r2plus1d", "i3d, r2plus1d, r3d, mc3 or tsm.")
_METHOD = flags.DEFINE_string("method", "step", "An extremal method or a path method (integrated_gradients, "
                              "smooth_grad), by name or alias; see vjx.attribution.registry.")
_AREAS = flags.DEFINE_list("perturb_area", ["0.01", "0.02", "0.05", "0.1", "0.15", "0.2"], "Area ratios in (0, 1).")
_NUM_ITER = flags.DEFINE_integer("num_iter", None, "Iterations per area (default 3), or path points (default 25).")
_PATH_BATCH = flags.DEFINE_integer("path_batch", 1, "Path points per forward/backward pass (integrated_grad, "
                                   "smooth_grad); 1 is fastest on CPU.")
_VIDEO = flags.DEFINE_string("video", None, "Clip to explain (default: the bundled Big Buck Bunny clip).")
_AREA_BATCH = flags.DEFINE_integer("area_batch", None, "Areas optimised side by side (vmapped); default: the "
                                   "engine's choice for the backend (1 on CPU, all elsewhere).")
_PER_CALL = flags.DEFINE_integer("iterations_per_call", None, "Iterations per compiled call (a lax.scan of that "
                                 "length); default: the engine's choice (1 on CPU, all elsewhere).")
_SKIP_TORCH = flags.DEFINE_bool("skip_torch", False, "Time vjx only.")
_COST = flags.DEFINE_bool("cost", False, "Also report XLA's cost and memory analyses of one all-areas iteration.")
_COST_ONLY = flags.DEFINE_bool("cost_only", False, "Only the cost and memory analyses (nothing is run).")
_SPLIT = flags.DEFINE_bool("split", False, "Only time one area-iteration against the model's forward + input "
                           "gradient alone and against the mask machinery alone (a model that costs nothing), "
                           "in turn in one run (--num_iter repeats, at least 3).")
_JSON = flags.DEFINE_string("json", None, "Also write the results here.")

# The methods besides the extremal ones that have a torch twin to time against (canonical names).
PATH_METHODS = ("integrated_gradients", "smooth_grad")


def torch_path_method(torch_model, video, target: int, method: str, points: int, mean, std) -> None:
    """The original's integrated gradients (black baseline) or SmoothGrad (noise 0.15 of the range):
    one gradient per path point, one after another. ``video``: ``1 x C x T x H x W``."""
    import torch

    from vjx.torch_reference.backprop import gradient, integrated_gradients

    labels = torch.tensor([target])
    if method == "integrated_gradients":
        black = [(0.0 - m) / s for m, s in zip(mean, std)]
        integrated_gradients(torch_model, video, labels, black, steps=points)
        return
    sigma = 0.15 * float(video.max() - video.min())
    total = torch.zeros_like(video)
    for _ in range(points):
        total += gradient(torch_model, video + sigma * torch.randn_like(video), labels) ** 2
    (total / points).abs().sum(dim=1)


def time_path_method(name: str, model, torch_model, x: np.ndarray, target: int, points: int, batch: int) -> dict:
    """Seconds of one whole call on each side, for ``points`` path points."""
    import jax
    import torch

    from vjx import attribution
    from vjx.pipeline import methods
    from vjx.torch_reference import freeze

    config = (attribution.IntegratedGradientsConfig(steps=points, batch_size=batch) if name == "integrated_gradients"
              else attribution.SmoothGradConfig(samples=points, batch_size=batch))
    function = methods.get(name).function
    targets, key = np.array([target], np.int32), jax.random.key(0)
    start = time.perf_counter()
    jax.block_until_ready(function(model, x, targets, config, key=key).maps)
    first_s = time.perf_counter() - start
    start = time.perf_counter()
    jax.block_until_ready(function(model, x, targets, config, key=key).maps)
    vjx_s = time.perf_counter() - start
    video_t = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 4, 1, 2, 3)))

    def torch_seconds() -> float:
        start = time.perf_counter()
        torch_path_method(torch_model, video_t, target, name, points, model.spec.mean, model.spec.std)
        return time.perf_counter() - start

    torch_s = torch_seconds()              # as the original: its parameters collect gradients too
    freeze(torch_model)
    input_only_s = torch_seconds()         # input gradients only (what vjx, and torch.autograd.grad, compute)
    return {"path_points": points, "path_batch": batch, "vjx_first_call_s": first_s, "vjx_s": vjx_s,
            "torch_s": torch_s, "torch_input_only_s": input_only_s, "torch_threads": torch.get_num_threads(),
            "speedup": torch_s / vjx_s, "speedup_input_only": input_only_s / vjx_s}


def _free_model(variables, video):
    """A 'model' whose forward and backward cost nothing: logits from the clip's mean."""
    import jax.numpy as jnp
    m = video.mean(axis=(1, 2, 3, 4))
    return jnp.stack([m, -m], axis=-1)


def cost_analysis(method, model, x, targets, config) -> dict:
    """FLOPs / bytes of one iteration of every area vmapped, model vs mask machinery, and peak memory."""
    import dataclasses

    from vjx.attribution.perturbation import config as config_module
    from vjx.attribution.perturbation import loop

    name = method.function.__name__
    resolved, geometry = config_module.resolve(name, dataclasses.replace(config, area_batch=len(config.areas)),
                                               *x.shape[1:4], model.spec.ep_sigma)
    problem = loop.Problem.of(name, geometry, resolved)

    def compiled(apply_fn, variables):
        return loop.compile_iteration(apply_fn, problem, resolved.areas, variables, x, targets)

    def numbers(executable) -> dict:
        cost = executable.cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        memory = executable.memory_analysis()
        return {"flops": float(cost.get("flops", 0.0)), "transcendentals": float(cost.get("transcendentals", 0.0)),
                "bytes_accessed": float(cost.get("bytes accessed", 0.0)),
                "peak_bytes": float(memory.temp_size_in_bytes + memory.argument_size_in_bytes
                                    + memory.output_size_in_bytes - memory.alias_size_in_bytes)}

    whole = numbers(compiled(model.apply_fn, model.variables))
    machinery = numbers(compiled(_free_model, {}))
    return {"iteration_flops": whole["flops"], "mask_machinery_flops": machinery["flops"],
            "model_flops": whole["flops"] - machinery["flops"],
            "machinery_to_model_flops": machinery["flops"] / max(whole["flops"] - machinery["flops"], 1.0),
            "iteration_transcendentals": whole["transcendentals"],
            "mask_machinery_transcendentals": machinery["transcendentals"],
            "iteration_bytes": whole["bytes_accessed"], "mask_machinery_bytes": machinery["bytes_accessed"],
            "machinery_to_model_bytes": machinery["bytes_accessed"]
            / max(whole["bytes_accessed"] - machinery["bytes_accessed"], 1.0),
            "peak_memory_gib": whole["peak_bytes"] / 2 ** 30}


def iteration_split(method, model, x, targets, config, repeats: int) -> dict:
    """Per area-iteration of the ``native`` schedule (the one for the model's own size): the model's
    forward + input gradient alone, the whole iteration, and the iteration with a model that costs
    nothing (the mask machinery alone), timed in turn in one run. Every timed iteration is in the
    schedule's sharpening phase; the machinery is also timed in the straight-through phase (the
    last ``1 - hard_from`` of the run, where the hard mask is made and blended too), and the two are
    averaged over the run.

    Medians of ``repeats`` calls each, after one call that compiles.
    """
    import dataclasses

    import jax

    from vjx.attribution.perturbation import config as config_module
    from vjx.attribution.perturbation import loop, warm_start

    name = method.function.__name__
    config = dataclasses.replace(config, schedule="native", num_iter=None, area_batch=1, sharpen_from=0.0)
    resolved, geometry = config_module.resolve(name, config, *x.shape[1:4], model.spec.ep_sigma)
    problem = loop.Problem.of(name, geometry, resolved)
    straight_through = loop.Problem.of(name, geometry, dataclasses.replace(resolved, hard_from=0.0))
    area = resolved.areas[len(resolved.areas) // 2]
    calls = {"model": lambda: warm_start.gradient_map(model.apply_fn, model.variables, x, targets),
             "iteration": loop.iteration_runner(model.apply_fn, problem, area, model.variables, x, targets),
             "machinery": loop.iteration_runner(_free_model, problem, area, {}, x, targets),
             "machinery_hard": loop.iteration_runner(_free_model, straight_through, area, {}, x, targets)}
    seconds = {k: [] for k in calls}
    for call in calls.values():
        jax.block_until_ready(call())
    for _ in range(repeats):
        for k, call in calls.items():
            start = time.perf_counter()
            jax.block_until_ready(call())
            seconds[k].append(time.perf_counter() - start)
    ms = {k: 1e3 * statistics.median(v) for k, v in seconds.items()}
    hard_share = 1 - loop.hard_start(resolved) / resolved.num_iter
    run_mean = (1 - hard_share) * ms["machinery"] + hard_share * ms["machinery_hard"]
    return {"split_area": area, "split_repeats": repeats, "model_ms": ms["model"], "iteration_ms": ms["iteration"],
            "machinery_ms": ms["machinery"], "machinery_to_model": ms["machinery"] / ms["model"],
            "machinery_hard_ms": ms["machinery_hard"], "hard_share": hard_share,
            "machinery_run_mean_to_model": run_mean / ms["model"],
            "iteration_minus_model_to_model": (ms["iteration"] - ms["model"]) / ms["model"]}


def run() -> dict:
    """Times both implementations (and/or analyses the compiled iteration); returns the measurements."""
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
    if not method.extremal and method.name not in PATH_METHODS:
        raise ArgumentError("method", f"{_METHOD.value!r} is not timed here; choose one of "
                            f"{', '.join(methods.extremal_names() + PATH_METHODS)}")
    n = _NUM_ITER.value or (3 if method.extremal else 25)
    if n < 2:
        raise VjxError(f"--num_iter must be at least 2 (the first iteration is not timed), got {n}")
    if _PATH_BATCH.value < 1:
        raise VjxError(f"--path_batch must be at least 1, got {_PATH_BATCH.value}")
    areas = check_areas(_cli.parse_areas(_AREAS.value))
    spec = get_spec(_ARCH.value)
    video = data.read_video(_VIDEO.value or data.sample_video_path())
    x = model_input(spec, video)[None]
    torch_model, model = twin_models(spec.name)
    target = int(np.argmax(np.asarray(model(x))))
    result = {"arch": spec.name, "method": method.name, "input": "x".join(map(str, x.shape)),
              "device": str(jax.devices()[0]), "machine": platform.processor() or platform.machine(),
              "jax": jax.__version__, "torch": torch.__version__}
    if not method.extremal:
        return {**result, **time_path_method(method.name, model, torch_model, x, target, n, _PATH_BATCH.value)}
    config = ExtremalConfig(areas=areas, schedule="original", num_iter=n, sigma=spec.ep_sigma,
                            area_batch=_AREA_BATCH.value, iterations_per_call=_PER_CALL.value)
    targets = np.array([target], np.int32)
    result.update(areas=list(areas), num_iter=n, area_batch=_AREA_BATCH.value, iterations_per_call=_PER_CALL.value)
    if _COST.value or _COST_ONLY.value:
        result.update(cost_analysis(method, model, x, targets, config))
    if _COST_ONLY.value:
        return result
    if _SPLIT.value:
        result.update(iteration_split(method, model, x, targets, config, max(n, 3)))
        return result

    stamps: list[float] = []
    start = time.perf_counter()
    jax.block_until_ready(method.function(model, x, targets, config,
                                          progress=lambda done, total: stamps.append(time.perf_counter())).masks)
    first_s = time.perf_counter() - start
    stamps.clear()
    start = time.perf_counter()
    jax.block_until_ready(method.function(model, x, targets, config,
                                          progress=lambda done, total: stamps.append(time.perf_counter())).masks)
    vjx_s = time.perf_counter() - start
    iteration_s = statistics.median(np.diff(stamps)) if len(stamps) > 2 else (stamps[-1] - start) / n
    result.update(vjx_first_call_s=first_s, vjx_s=vjx_s, vjx_per_iter_ms=1e3 * iteration_s)
    if not _SKIP_TORCH.value:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        torch_model = torch_model.to(device)
        video_t = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 4, 1, 2, 3))).to(device)
        start = time.perf_counter()
        extremal_loop(torch_model, video_t, target, areas, method=method.name, num_iter=n,
                      sigma=spec.ep_sigma)
        if device == "cuda":
            torch.cuda.synchronize()
        torch_s = time.perf_counter() - start
        result.update(torch_s=torch_s, torch_per_iter_ms=1e3 * torch_s / n, torch_device=device,
                      torch_threads=torch.get_num_threads(), speedup=torch_s / n / iteration_s,
                      speedup_end_to_end=torch_s / first_s)
    return result


def main(argv: list[str]) -> None:
    _cli.no_extra_arguments(argv)
    result = run()
    if "path_points" in result:
        print(f"{result['arch']} {result['method']} {result['path_points']} path points ({result['path_batch']} per "
              f"pass), input {result['input']} on {result['device']}\n"
              f"  vjx {result['vjx_s']:.1f} s (first call with compilation {result['vjx_first_call_s']:.1f} s)   "
              f"torch {result['torch_s']:.1f} s (one point after another, as the original: weight gradients "
              f"too)   vjx speed / torch speed {result['speedup']:.2f}x\n"
              f"  torch with frozen parameters {result['torch_input_only_s']:.1f} s (input gradients only)   "
              f"vjx speed / torch speed {result['speedup_input_only']:.2f}x")
    else:
        print(f"{result['arch']} {result['method']} {len(result['areas'])} areas x {result['num_iter']} iterations, "
              f"input {result['input']} on {result['device']}")
    if "iteration_flops" in result:
        print(f"  one iteration, all areas vmapped: {result['iteration_flops'] / 1e9:.1f} GFLOP "
              f"(model {result['model_flops'] / 1e9:.1f}, mask machinery {result['mask_machinery_flops'] / 1e9:.1f} = "
              f"{100 * result['machinery_to_model_flops']:.1f}% of the model; "
              f"{result['iteration_transcendentals'] / 1e6:.0f} M transcendentals, "
              f"{result['mask_machinery_transcendentals'] / 1e6:.0f} M of them the machinery's), "
              f"{result['iteration_bytes'] / 1e9:.1f} GB "
              f"accessed (machinery {100 * result['machinery_to_model_bytes']:.1f}% of the model's), "
              f"peak memory {result['peak_memory_gib']:.1f} GiB")
    if "model_ms" in result:
        print(f"  one area-iteration (area {result['split_area']}, median of {result['split_repeats']}): "
              f"model forward + input gradient {result['model_ms']:.0f} ms   whole iteration "
              f"{result['iteration_ms']:.0f} ms (+{100 * result['iteration_minus_model_to_model']:.0f}% of the "
              f"model)   mask machinery alone {result['machinery_ms']:.0f} ms "
              f"({100 * result['machinery_to_model']:.0f}% of the model); in the last "
              f"{100 * result['hard_share']:.0f}% of the run (the model sees the hard mask) "
              f"{result['machinery_hard_ms']:.0f} ms; over the run {100 * result['machinery_run_mean_to_model']:.0f}%")
    if "vjx_per_iter_ms" in result:
        print(f"  vjx   {result['vjx_per_iter_ms']:9.1f} ms/iteration (all areas; first call with compilation "
              f"{result['vjx_first_call_s']:.1f} s, second call {result['vjx_s']:.1f} s)")
    if "torch_per_iter_ms" in result:
        print(f"  torch {result['torch_per_iter_ms']:9.1f} ms/iteration (areas one after another)   "
              f"vjx speed / torch speed {result['speedup']:.2f}x ({result['speedup_end_to_end']:.2f}x end to end "
              f"with compilation)")
    if _JSON.value:
        from vjx.pipeline.files import write_json
        write_json(_JSON.value, result)


if __name__ == "__main__":
    _cli.run(main, {**_cli.FLAG_NAMES, "model": "--arch", "method": "--method", "output_dir": "--json"})
