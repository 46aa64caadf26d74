"""Hierarchical prototype explanations (HIPE, Gulshad et al. 2023) on any vjx backbone.

    from vjx import prototypes
    hierarchy = prototypes.read_hierarchy("hierarchy.csv")          # class,parent[,grandparent...]
    network = prototypes.PrototypeNetwork(spec, hierarchy, prototypes.PrototypeConfig())
    model = prototypes.train(network, backbone.variables, clips, prototypes.Schedule(), "runs/hipe",
                             key=jax.random.key(0))
    levels = prototypes.explain(model, x[None])                      # per level: class, prototypes, maps

See docs/prototypes.md.
"""
from vjx.prototypes.embeddings import load_class_embeddings
from vjx.prototypes.explain import LevelExplanation, PrototypeActivationConfig, explain, prototype_activation
from vjx.prototypes.head import PrototypeHead, embedding_distances, similarity
from vjx.prototypes.hierarchy import Hierarchy, name_key, read_hierarchy
from vjx.prototypes.losses import LossWeights, prototype_loss
from vjx.prototypes.network import PrototypeConfig, PrototypeModel, PrototypeNetwork
from vjx.prototypes.push import cell_box, push_prototypes
from vjx.prototypes.runs import explain_run, train_run
from vjx.prototypes.store import load_trained
from vjx.prototypes.training import Clips, Schedule, load_clips, split_clips, train

__all__ = ["Clips", "Hierarchy", "LevelExplanation", "LossWeights", "PrototypeActivationConfig", "PrototypeConfig", "PrototypeHead", "PrototypeModel",
           "PrototypeNetwork", "Schedule", "cell_box", "embedding_distances", "load_class_embeddings",
           "explain", "explain_run", "load_clips", "load_trained", "name_key", "prototype_activation", "prototype_loss", "push_prototypes", "read_hierarchy", "similarity",
           "split_clips", "train", "train_run"]
