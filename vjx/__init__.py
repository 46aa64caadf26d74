"""vjx: which pixels in which frames a video classifier's decision rests on, in JAX/Flax.

    import vjx
    model = vjx.load_model("i3d", pretrained="kinetics400")
    video = vjx.read_video("clip.mp4")
    x = model.spec.prepare(video.frames)        # float32 T x 224 x 224 x 3
    logits = model(x[None])                     # 1 x 400
"""
from vjx import attribution, metrics
from vjx.data import Video, list_videos, read_video, sample_frames, sample_video_path
from vjx.errors import VjxError
from vjx.model import Model, load_model
from vjx.models.registry import ModelSpec, get_spec, model_names
from vjx.startup_log import hide_missing_tpu_notice

hide_missing_tpu_notice()

__all__ = ["Model", "attribution", "metrics", "ModelSpec", "Video", "VjxError", "get_spec", "list_videos",
           "load_model", "model_names", "read_video", "sample_frames", "sample_video_path"]
__version__ = "0.1.0"
