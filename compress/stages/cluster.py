"""cluster: weight clustering (k-means++ centroids), fine-tuned, wrappers stripped. After
pruning it keeps the zeros (sparsity-preserving clustering). Reports distinct values per layer.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from compress.backends.keras import save_artifact
from compress.core.state import RunState
from compress.keras.model_io import same_origin
from compress.keras.training import fine_tune, wrap_layers
from compress.stages.base import Stage
from compress.stages.finetune import FineTuneParams, begin


class ClusterParams(FineTuneParams):
    clusters: int = Field(ge=2, le=256, description="distinct values per weight tensor")
    preserve_sparsity: bool | None = Field(
        None, description="keep zeros at zero; None: when the model was pruned"
    )


def unique_values(model: Any, layer_names: list[str]) -> dict[str, int]:
    """Most distinct values in any weight matrix (rank >= 2, not a bias: MultiHeadAttention's
    biases are (heads, size)) of each named layer."""

    def counted(w: Any) -> bool:
        return len(w.shape) >= 2 and "bias" not in w.name.rsplit("/", 1)[-1]

    return {
        name: max(
            (len(np.unique(w.numpy())) for w in model.get_layer(name).weights if counted(w)),
            default=0,
        )
        for name in layer_names
    }


class Cluster(Stage):
    name = "cluster"
    Params = ClusterParams
    produces_model = True
    model_artifact = "model_clustered.keras"
    optional = True

    def changes_layers(self) -> bool:
        return True

    def run(self, state: RunState) -> RunState:
        p = self.params
        from compress.keras.layers import with_tfmot  # imports TensorFlow

        tfmot = with_tfmot()
        state, data, fresh, targets = begin(self, state)
        preserve = "prune" in state.info if p.preserve_sparsity is None else p.preserve_sparsity
        init = tfmot.clustering.keras.CentroidInitialization.KMEANS_PLUS_PLUS

        def wrap(layer):
            return tfmot.clustering.keras.cluster_weights(
                layer, number_of_clusters=p.clusters, cluster_centroids_init=init,
                preserve_sparsity=preserve,
            )  # fmt: skip

        clustered, skipped = wrap_layers(fresh, targets, wrap)
        fine_tune(clustered, data, p, fresh.output_names)
        stripped = same_origin(tfmot.clustering.keras.strip_clustering(clustered), fresh)
        for layer in stripped.layers:  # a layer whose strip needs finishing (keras/layers.py)
            if hasattr(layer, "after_strip_clustering"):
                layer.after_strip_clustering()
        done = [n for n in targets if n not in skipped]
        info = {
            "clusters": p.clusters,
            "preserve_sparsity": preserve,
            "unique_values": unique_values(stripped, done),
            "not_clustered": skipped,
        }
        knobs = {"clusters": p.clusters, "layers": done, "preserve_sparsity": preserve}
        saved = save_artifact(state.workdir, self.model_artifact, stripped, "clustered", knobs)
        return state.add((saved,)).with_model(stripped).with_info("cluster", info)
