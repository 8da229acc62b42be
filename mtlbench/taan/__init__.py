"""TAAN -- task adaptive activation networks [liu2020]: the exact fast activation and the closed-form functional
analysis (moments, inner products, distances, regularizers).

``gmm`` arguments are None (the standard normal) or a list of (weight, mu, sigma) components; alpha is
[T, M], b is [M]. Everything is differentiable in alpha and b.
"""
from mtlbench.taan.activation import (
    adaptive_activation,
    apl,
    bucket_index,
    naive_adaptive_activation,
    uniform_grid,
)
from mtlbench.taan.functional import (
    activation_distance,
    activation_inner,
    cosine_matrix,
    cosine_reg,
    distance_matrix,
    distance_reg,
    inner_matrix,
    trace_norm_reg,
)
from mtlbench.taan.module import AdaptiveActivation
from mtlbench.taan.moments import gaussian_moments, mixture_moments
from mtlbench.taan.options import GridInit, NormalInit, UniformInit, ZeroInit

__all__ = [
    "AdaptiveActivation", "GridInit", "NormalInit", "UniformInit", "ZeroInit",
    "activation_distance", "activation_inner", "adaptive_activation", "apl", "bucket_index",
    "cosine_matrix", "cosine_reg", "distance_matrix", "distance_reg", "gaussian_moments", "inner_matrix",
    "mixture_moments", "naive_adaptive_activation", "trace_norm_reg", "uniform_grid",
]
