"""Videos in, model inputs out: reading, frame sampling, preprocessing, label sets, the demo clip.

    from vjx.data import read_video, sample_video_path
    video = read_video(sample_video_path())     # uint8 N x H x W x 3, Big Buck Bunny excerpt
"""
from importlib import resources

from vjx.data.labels import LABEL_SETS, close_labels, label_set_size, load_labels, resolve_label
from vjx.data.preprocess import denormalize, preprocess_frames
from vjx.data.sampling import sample_frames, sample_indices
from vjx.data.video import Video, list_videos, read_video, video_name


def sample_video_path() -> str:
    """Path of the bundled demo clip: 3.6 s of Big Buck Bunny (CC-BY 3.0, see assets/CREDITS.txt).

    90 frames of 456x256 at 25 fps: the rabbit climbs out of its burrow and stretches.
    """
    return str(resources.files("vjx") / "assets" / "bigbuckbunny_excerpt.mp4")


__all__ = ["LABEL_SETS", "Video", "close_labels", "denormalize", "label_set_size", "list_videos",
           "load_labels", "preprocess_frames", "read_video", "resolve_label", "sample_frames",
           "sample_indices", "sample_video_path", "video_name"]
