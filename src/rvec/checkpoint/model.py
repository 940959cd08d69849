"""Moved to :mod:`rvec.model.loading`; this name stays so existing imports keep working."""

from rvec.model.loading import FLOAT_DTYPES, default_dtype, load_causal_lm, pick_device, pick_dtype

__all__ = ["FLOAT_DTYPES", "default_dtype", "load_causal_lm", "pick_device", "pick_dtype"]
