"""The MultiViz stages, computed for any model behind ``engine.interface``.

- U, unimodal importance: ``gradient_importance``, ``lime_importance``.
- C, cross-modal interactions: ``second_order_gradient``.
- R_l, local representation: ``local_representation``.
- R_g, global representation: ``pool_features``, ``global_representation``.
- P, multimodal prediction: ``fit_sparse_model``, ``fit_prediction_stage``.

Every explanation is taken with respect to a ``Target``: a class logit or a feature z_j.
"""

from engine.stages._inputs import grid_regions
from engine.stages.interaction import (
    second_order_gradient,
    second_order_gradient_loop,
    top_atoms,
)
from engine.stages.prediction import (
    RegularizationPath,
    SparseModelFit,
    alpha_max,
    fit_prediction_stage,
    fit_sparse_model,
)
from engine.stages.representation import (
    Interaction,
    LocalRepresentation,
    global_representation,
    interactions_for,
    local_representation,
    pool_features,
)
from engine.stages.targets import Target, class_target, feature_target
from engine.stages.unimodal import (
    LimeImportance,
    gradient_importance,
    gradient_importance_batch,
    lime_importance,
    lime_importances,
    slic_segments,
)

__all__ = [
    "Interaction",
    "LimeImportance",
    "LocalRepresentation",
    "RegularizationPath",
    "SparseModelFit",
    "Target",
    "alpha_max",
    "class_target",
    "feature_target",
    "fit_prediction_stage",
    "fit_sparse_model",
    "global_representation",
    "gradient_importance",
    "gradient_importance_batch",
    "grid_regions",
    "interactions_for",
    "lime_importance",
    "lime_importances",
    "local_representation",
    "pool_features",
    "second_order_gradient",
    "second_order_gradient_loop",
    "slic_segments",
    "top_atoms",
]
