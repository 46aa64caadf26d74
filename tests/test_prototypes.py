"""vjx.prototypes: hierarchy, embeddings, head, losses, push, training (resume) and the planted proof."""
from __future__ import annotations

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.planted_hierarchy import TINY_SPEC, mirrored, planted_clips, write_hierarchy
from tests.test_experiments import assert_usage_error, run_script, write_frames
from vjx import metrics, prototypes
from vjx.errors import VjxError
from vjx.models.registry import get_spec
from vjx.prototypes.losses import HIPE_SEPARATION
from vjx.prototypes.training import Clips


def _csv(tmp_path, text, name="h.csv"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_hierarchy_levels_ancestors_and_root(tmp_path):
    h = prototypes.read_hierarchy(_csv(tmp_path, "# UCF-like\nApply Eye Makeup,Self-grooming,Body,Root\n"
                                       "Shaving Beard,Self-grooming,Body,Root\n\nDiving,Water,Sports,Root\n"))
    assert h.levels == (("Apply Eye Makeup", "Shaving Beard", "Diving"), ("Self-grooming", "Water"), ("Body", "Sports"))
    np.testing.assert_array_equal(h.ancestors, [[0, 0, 0], [1, 0, 0], [2, 1, 1]])
    assert h.offsets == (0, 3, 5) and h.all_names()[3] == "Self-grooming"
    assert h.leaf_index("ApplyEyeMakeup", "clip x") == 0 and h.leaf_index("shaving_beard", "clip x") == 1
    with pytest.raises(VjxError, match="clip 'c/swimming-1'.*'Swimming' is not a class"):
        h.leaf_index("Swimming", "clip 'c/swimming-1'")


@pytest.mark.parametrize("text, message", [
    ("a,p,g\nb,q,g\na2,p,h\n", r"row 3: 'p' has parent 'h' here and 'g' in row 1"),
    ("a,b\nb,a\n", r"row 2: 'b' is on level 0 here and on level 1 in row 1"),
    ("a,p,g\nb,q\n", r"row 2 has 2 columns, row 1 has 3"),
    ("a\nb\n", r"one level"),
    ("a,p\na,p\n", r"row 2: class 'a' is listed again"),
    ("a,,g\n", r"row 1 has an empty name"),
])
def test_hierarchy_bad_input_names_file_and_row(tmp_path, text, message):
    path = _csv(tmp_path, text)
    with pytest.raises(VjxError, match=f"hierarchy '{path}'.*{message}"):
        prototypes.read_hierarchy(path)


class RunsCode:
    """Unpickling this calls a function: a file holding it must be refused, not loaded."""

    def __reduce__(self):
        return (print, ("this ran while loading",))


def test_class_embeddings_load_with_weights_only_and_refuse_others(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    h = prototypes.read_hierarchy(_csv(tmp_path, "Apply Eye Makeup,Grooming\nDiving,Water\n"))
    good = tmp_path / "emb.pth"
    torch.save({"objects": ["Water", "Diving", "Grooming", "Apply Eye Makeup", "Extra"],
                "embeddings": torch.arange(10, dtype=torch.float32).reshape(5, 2)}, good)
    np.testing.assert_array_equal(prototypes.load_class_embeddings(good, h), [[6, 7], [2, 3], [4, 5], [0, 1]])
    torch.save({"objects": ["a"], "embeddings": torch.zeros(1, 2), "code": RunsCode()}, tmp_path / "code.pth")
    torch.save({"names": [], "table": torch.zeros(1, 2)}, tmp_path / "keys.pth")
    torch.save({"objects": ["Diving"], "embeddings": torch.zeros(1, 2)}, tmp_path / "missing.pth")
    for name, message in (("code", "weights_only=True"), ("keys", "must be a dict with 'objects'"),
                          ("missing", "no row for 3 classes")):
        with pytest.raises(VjxError, match=f"{name}.pth.*{message}"):
            prototypes.load_class_embeddings(tmp_path / f"{name}.pth", h)
    assert "this ran" not in capsys.readouterr().out


def test_push_moves_each_prototype_to_its_nearest_own_class_patch():
    patches = np.zeros((2, 1, 1, 2, 1), np.float32)           # 2 clips x 2 cells, 1-d patches
    patches[0, 0, 0] = [[1.0], [5.0]]
    patches[1, 0, 0] = [[2.0], [9.0]]
    labels = np.array([[0, 0], [1, 0]])                         # clip 0: leaf 0, clip 1: leaf 1; parent 0
    prototype_class = np.array([0, 1, 2, 3])                    # leaf 0, leaf 1, leaf 2 (no clip), parent 0
    prototype_level = np.array([0, 0, 0, 1])
    prototypes_ = np.array([[4.0], [3.0], [7.0], [8.5]], np.float32)
    new, sources, distances = prototypes.push_prototypes(prototypes_, patches, labels, prototype_class,
                                                         prototype_level, offsets=(0, 3))
    np.testing.assert_array_equal(new[:, 0], [5.0, 2.0, 7.0, 9.0])
    np.testing.assert_array_equal(sources, [[0, 0, 0, 1], [1, 0, 0, 0], [-1, -1, -1, -1], [1, 0, 0, 1]])
    np.testing.assert_allclose(distances, [1.0, 1.0, np.inf, 0.25])
    assert prototypes.cell_box((1, 0, 3), (2, 2, 4), (16, 32, 32)) == ((8, 16), (0, 16), (24, 32))


def test_losses_cluster_and_separation_per_level_capped():
    min_d = jnp.array([[1.0, 4.0, 9.0, 2.0, 200.0]])            # prototypes: leaves 0, 1, 2; parents 0, 1
    outputs = {"min_distances": min_d, "scores": (jnp.zeros((1, 3)), jnp.zeros((1, 2)))}
    weights = prototypes.LossWeights(cross_entropy=0.0, cluster=(1.0, 0.0), separation=(0.0, 0.0), l1=0.0)
    args = (np.array([0, 1, 2, 3, 4]), np.array([0, 0, 0, 1, 1]), (0, 3), jnp.ones((5, 2)))
    _, terms = prototypes.prototype_loss(outputs, jnp.array([[1, 1]]), *args, weights, max_distance=128.0)
    assert float(terms["cluster_0"]) == 4.0 and float(terms["separation_0"]) == 1.0
    assert float(terms["cluster_1"]) == 128.0 and float(terms["separation_1"]) == 2.0     # 200 capped
    assert float(terms["l1"]) == 10.0
    np.testing.assert_allclose(float(terms["cross_entropy_0"]), np.log(3), rtol=1e-6)


@pytest.mark.parametrize("name, cells", [("r3d_18", (2, 7, 7)), ("i3d", (2, 4, 4))])
def test_head_reads_real_backbones_feature_maps(tmp_path, name, cells):
    h = prototypes.read_hierarchy(_csv(tmp_path, "a,p\nb,p\nc,q\n"))
    net = prototypes.PrototypeNetwork(get_spec(name), h, prototypes.PrototypeConfig(prototypes_per_class=2))
    video = jax.ShapeDtypeStruct((1, 16, 112, 112, 3), jnp.float32)
    variables = jax.eval_shape(net.init, jax.random.key(0), video)
    out = jax.eval_shape(net.outputs, variables, video)
    assert [s.shape for s in out["scores"]] == [(1, 3), (1, 2)]
    assert out["distances"].shape == (1, *cells, 10) and out["min_distances"].shape == (1, 10)
    maps = jax.eval_shape(functools.partial(net.activation_maps, size=(16, 112, 112)), out["distances"],
                          jnp.zeros((1, 3), int))
    assert maps.shape == (1, 3, 16, 112, 112)


def _planted(tmp_path, per_class, seed):
    h = prototypes.read_hierarchy(write_hierarchy(tmp_path / "planted.csv"))
    videos, leaves, boxes = planted_clips(h, per_class, seed)
    return h, Clips(videos, tuple(f"clip{seed}_{i}" for i in range(len(videos))), h.level_labels(leaves)), boxes


PLANTED_SCHEDULE = prototypes.Schedule(
    warm_epochs=5, joint_epochs=20, last_epochs=10, batch_size=8, fine_tune=True, lr_head=1e-2, lr_backbone=1e-2,
    weights=prototypes.LossWeights(separation=tuple(5 * w for w in HIPE_SEPARATION)))
PLANTED_CONFIG = prototypes.PrototypeConfig(prototypes_per_class=2, prototype_dim=16, embedding_dim=16)
CELL = 4.0  # pointing tolerance: one cell of the tiny backbone's feature map, in pixels


def peak_pointing(maps: np.ndarray, boxes: np.ndarray, tolerance: float) -> float:
    """Share of clips whose map's peak over T x H x W is within ``tolerance`` px of the box in its frame."""
    maps = np.asarray(maps)
    peak_frame = np.unravel_index(maps.reshape(len(maps), -1).argmax(-1), maps.shape[1:])[0]
    peak_only = np.arange(maps.shape[1])[None] == peak_frame[:, None]
    return float(metrics.spatial_pointing_game(maps, boxes, peak_only, tolerance=tolerance).hit_rate)


def test_planted_hierarchy_is_learned_and_explained_where_the_object_is(tmp_path):
    h, train_clips, train_boxes = _planted(tmp_path, 8, 0)
    _, heldout, heldout_boxes = _planted(tmp_path, 2, 1)
    net = prototypes.PrototypeNetwork(TINY_SPEC, h, PLANTED_CONFIG)
    backbone = net.backbone.init(jax.random.key(1), jnp.asarray(train_clips.videos[:1]))
    model = prototypes.train(net, backbone, train_clips, PLANTED_SCHEDULE, str(tmp_path / "run"),
                             key=jax.random.key(0), heldout=heldout)
    last = json.loads((tmp_path / "run" / "log.json").read_text())["epochs"][-1]
    print("planted accuracy per level (leaf, parent, colour): train", last["train_accuracy"],
          "held out", last["heldout_accuracy"])
    assert min(last["train_accuracy"]) >= 0.95 and last["heldout_accuracy"][2] == 1.0
    for level in range(h.num_levels):
        for name, clips, boxes in (("training", train_clips, train_boxes), ("held-out", heldout, heldout_boxes)):
            maps = prototypes.prototype_activation(model, jnp.asarray(clips.videos), jnp.asarray(clips.labels[:, level]),
                                                   prototypes.PrototypeActivationConfig(level=level)).maps
            on, off = peak_pointing(maps, boxes, CELL), peak_pointing(maps, mirrored(boxes), CELL)
            print(f"level {level}, {name} clips: pointing {on:.3f}, mirrored control {off:.3f}")
            assert on >= 0.6 and off <= 0.2
    levels = prototypes.explain(model, train_clips.videos[:1], top_k=2)
    assert [lv.name for lv in levels] == [h.levels[i][j] for i, j in enumerate(train_clips.labels[0])]
    assert levels[0].maps.shape == (2, *train_clips.videos.shape[1:4])
    assert (levels[0].sources[:, 0] >= 0).all() and levels[0].similarities[0] >= levels[0].similarities[1]


def test_training_killed_mid_epoch_resumes_to_the_uninterrupted_result(tmp_path):
    h, clips, _ = _planted(tmp_path, 1, 0)
    net = prototypes.PrototypeNetwork(TINY_SPEC, h, prototypes.PrototypeConfig(prototypes_per_class=2, prototype_dim=8, embedding_dim=8))
    backbone = net.backbone.init(jax.random.key(1), jnp.asarray(clips.videos[:1]))
    schedule = prototypes.Schedule(warm_epochs=1, joint_epochs=2, last_epochs=1, batch_size=4)
    whole = prototypes.train(net, backbone, clips, schedule, str(tmp_path / "whole"), key=jax.random.key(0))

    def kill_in_epoch_3(done, total):
        if done == 5:                                          # 2 steps per epoch: epoch 3's first step
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        prototypes.train(net, backbone, clips, schedule, str(tmp_path / "cut"), key=jax.random.key(0),
                         progress=kill_in_epoch_3)
    assert not (tmp_path / "cut" / "model").exists()
    assert len(json.loads((tmp_path / "cut" / "log.json").read_text())["epochs"]) == 2
    steps = []
    resumed = prototypes.train(net, backbone, clips, schedule, str(tmp_path / "cut"), key=jax.random.key(0),
                               progress=lambda done, total: steps.append(done))
    assert steps == [5, 6, 7, 8]                               # epochs 3 and 4 only
    for a, b in zip(jax.tree_util.tree_leaves(whole.variables), jax.tree_util.tree_leaves(resumed.variables)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(whole.sources, resumed.sources)
    def rows(run):
        return [{k: v for k, v in r.items() if k != "seconds"}
                for r in json.loads((tmp_path / run / "log.json").read_text())["epochs"]]
    assert rows("cut") == rows("whole")


def test_train_script_refuses_a_clip_outside_the_hierarchy_and_writes_nothing(tmp_path):
    write_frames(tmp_path / "clips" / "abseiling-clip1", 4)
    write_frames(tmp_path / "clips" / "notaclass-clip2", 4, 1)
    hierarchy = _csv(tmp_path, "abseiling,rope sport\nironing,housework\n")
    out = tmp_path / "run"
    result = run_script("train_prototypes", "--videos_dir", tmp_path / "clips", "--hierarchy", hierarchy,
                        "--model", "r3d", "--input_size", "32", "--output_dir", out)
    assert_usage_error(result, "notaclass-clip2", out)
    assert "'notaclass' is not a class of the hierarchy" in result.stderr


def test_prototype_activation_is_a_method_only_for_prototype_models():
    from vjx import pipeline
    from vjx.errors import ArgumentError
    from vjx.pipeline import methods

    method = methods.get("prototype_activation")
    assert method.needs_prototype_model and method.function is prototypes.prototype_activation
    with pytest.raises(ArgumentError, match="method prototype_activation explains only a trained prototype model"):
        pipeline.resolve(pipeline.Request(videos=("v",), method="prototype_activation"))
    with pytest.raises(VjxError, match="needs a prototype model"):
        prototypes.prototype_activation(object(), jnp.zeros((1, 2, 8, 8, 3)), jnp.zeros(1, int))
