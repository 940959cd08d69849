"""Ways to combine vectors, mergekit's names and parameters: one module per method, one registry."""

from rvec.vector.methods.base import MergeMethod, ParamDef, Params
from rvec.vector.methods.registry import METHODS, get_method

__all__ = ["METHODS", "MergeMethod", "ParamDef", "Params", "get_method"]
