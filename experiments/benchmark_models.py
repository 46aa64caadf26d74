"""Forward+backward (gradient w.r.t. the input) of every model: vjx against its torch reference.

    python -m experiments.benchmark_models                      # all models, batch 1, spec sizes
    python -m experiments.benchmark_models --models=i3d,r3d --repeats=5 --json=speed.json

Both sides get the same random weights (torch reference -> converter -> Flax) and the same input;
torch's parameters are frozen, so neither side computes weight gradients.
Times are the best of --repeats runs after one warm-up (JAX compile excluded and reported apart).
"""
from __future__ import annotations

import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from experiments import _cli

_MODELS = flags.DEFINE_list("models", ["i3d", "r3d_18", "mc3_18", "r2plus1d_18", "tsm_resnet50"], "Models to time.")
_BATCH = flags.DEFINE_integer("batch", 1, "Clips per batch.")
_SIZE = flags.DEFINE_integer("size", None, "Frame side (default: each spec's crop).")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed runs per side; the best counts.")
_JSON = flags.DEFINE_string("json", None, "Also write the results here.")


def _best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def time_model(name: str, batch: int, size: int | None, repeats: int) -> dict:
    """Times jitted JAX and eager torch forward+backward of ``name``; returns seconds and the ratio."""
    import torch

    from vjx.torch_reference import freeze
    from vjx.torch_reference.parity import twin_models

    torch_model, model = twin_models(name)
    freeze(torch_model)                    # input gradients only, as on the vjx side
    spec = model.spec
    size = size or spec.crop
    video = np.random.default_rng(0).normal(size=(batch, spec.num_frames, size, size, 3)).astype(np.float32)

    x_torch = torch.from_numpy(np.ascontiguousarray(video.transpose(0, 4, 1, 2, 3)))

    def torch_step():
        x = x_torch.clone().requires_grad_(True)
        torch_model(x)[:, 0].sum().backward()
        return x.grad

    grad_fn = jax.jit(jax.grad(lambda v, x: model.apply_fn(v, x)[:, 0].sum(), argnums=1))
    x_jax = jnp.asarray(video)
    start = time.perf_counter()
    grad_fn(model.variables, x_jax).block_until_ready()
    compile_s = time.perf_counter() - start
    torch_step()
    jax_s = _best_of(lambda: grad_fn(model.variables, x_jax).block_until_ready(), repeats)
    torch_s = _best_of(torch_step, repeats)
    return {"model": spec.name, "input": f"{batch}x{spec.num_frames}x{size}x{size}x3", "torch_s": torch_s,
            "vjx_s": jax_s, "ratio": jax_s / torch_s, "vjx_first_call_s": compile_s}


def main(argv: list[str]) -> None:
    _cli.no_extra_arguments(argv)
    import torch

    results = [time_model(name, _BATCH.value, _SIZE.value, _REPEATS.value) for name in _MODELS.value]
    header = f"{'model':14} {'input':18} {'torch s':>8} {'vjx s':>8} {'vjx/torch':>9} {'vjx 1st call s':>14}"
    print(header)
    for r in results:
        print(f"{r['model']:14} {r['input']:18} {r['torch_s']:8.3f} {r['vjx_s']:8.3f} {r['ratio']:9.2f} "
              f"{r['vjx_first_call_s']:14.1f}")
    if _JSON.value:
        meta = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                "jax": jax.__version__, "torch": torch.__version__, "torch_threads": torch.get_num_threads()}
        from vjx.pipeline.files import write_json
        write_json(_JSON.value, {"meta": meta, "results": results})


if __name__ == "__main__":
    _cli.run(main, {"output_dir": "--json"})
