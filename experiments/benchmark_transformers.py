"""What explaining a full-size video transformer costs on this machine: rollout, relevance, one STEP
iteration, one integrated-gradients path point, and the peak memory of the process.

    python -m experiments.benchmark_transformers --model videomae        # ViT-B, 16 x 224^2
    python -m experiments.benchmark_transformers --model timesformer --json tsf.json

Random weights (the sizes are the Hugging Face base checkpoints'; no weights are downloaded). Times
after the first call (compilation reported apart); per-iteration and per-path-point times are the
gaps between progress callbacks. Peak memory is the process's maximum resident set size after
each stage (it only grows), so run one model per process.
"""
from __future__ import annotations

import os
import platform
import resource
import time

import jax
import numpy as np
from absl import flags

from experiments import _cli

_MODEL = flags.DEFINE_string("model", "videomae", "videomae or timesformer (the base sizes, random weights).")
_IG_STEPS = flags.DEFINE_integer("ig_steps", 3, "Path points of the integrated-gradients run (timed per point).")
_PATH_BATCH = flags.DEFINE_integer("path_batch", 1, "Path points per forward/backward pass (IG's batch_size).")
_STEP_ITERS = flags.DEFINE_integer("step_iters", 3, "STEP iterations (timed per iteration).")
_STAGES = flags.DEFINE_list("stages", ["attention_rollout", "attention_relevance", "step", "integrated_grad"],
                            "What to run, in order (peak memory only grows: run a stage alone for its own peak).")
_JSON = flags.DEFINE_string("json", None, "Also write the results here.")


def _peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20          # Linux: KiB


def _timed(fn) -> tuple[float, float]:
    """(first call s, second call s) of ``fn``, results blocked on."""
    times = []
    for _ in range(2):
        start = time.perf_counter()
        jax.block_until_ready(fn().maps)
        times.append(time.perf_counter() - start)
    return times[0], times[1]


def _gaps(run) -> tuple[float, float]:
    """(time to the first progress callback, mean gap between the later ones) of ``run(progress)``."""
    stamps = [time.perf_counter()]
    run(lambda done, total: stamps.append(time.perf_counter()))
    gaps = np.diff(stamps)
    return float(gaps[0]), float(gaps[1:].mean())


def benchmark(name: str, stages: list[str], ig_steps: int, path_batch: int, step_iters: int) -> dict:
    """Times ``stages`` (attention methods, STEP, IG) on ``name`` at its base size; returns the numbers."""
    import vjx
    from vjx import attribution

    model = vjx.load_model(name, seed=0)
    spec = model.spec
    video = np.random.default_rng(0).normal(size=(1, spec.num_frames, spec.crop, spec.crop, 3)).astype(np.float32)
    target = np.array([0])
    out = {"model": spec.name, "input": f"1x{spec.num_frames}x{spec.crop}x{spec.crop}x3"}
    for method in [stage for stage in stages if stage.startswith("attention_")]:
        first, again = _timed(lambda: getattr(attribution, method)(model, video, target))
        out[method] = {"first_call_s": first, "s": again, "peak_gib": _peak_gib()}
        print(method, out[method], flush=True)
    if "step" in stages:
        config = attribution.ExtremalConfig(areas=(0.1,), num_iter=step_iters, iterations_per_call=1,
                                            sigma=spec.ep_sigma)
        first, per = _gaps(lambda progress: attribution.step(model, video, target, config, progress=progress))
        out["step"] = {"first_iteration_s": first, "s_per_iteration": per, "peak_gib": _peak_gib()}
        print("step", out["step"], flush=True)
    if "integrated_grad" not in stages:
        return out
    config = attribution.IntegratedGradientsConfig(steps=ig_steps, batch_size=path_batch)
    first, per = _gaps(lambda progress: attribution.integrated_gradients(model, video, target, config,
                                                                         progress=progress))
    out["integrated_grad"] = {"path_batch": path_batch, "first_chunk_s": first, "s_per_chunk": per,
                              "peak_gib": _peak_gib()}
    print("integrated_grad", out["integrated_grad"], flush=True)
    return out


def main(argv: list[str]) -> None:
    _cli.no_extra_arguments(argv)
    result = benchmark(_MODEL.value, _STAGES.value, _IG_STEPS.value, _PATH_BATCH.value, _STEP_ITERS.value)
    if _JSON.value:
        from vjx.pipeline.files import write_json
        meta = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                "jax": jax.__version__, "load_average": os.getloadavg()}
        write_json(_JSON.value, {"meta": meta, "result": result})


if __name__ == "__main__":
    _cli.run(main, {"output_dir": "--json"})
