"""The keys a stage of a space may set, in schema order, each with its type and range: the one
list that the parser (`lknas.space.schema`) checks and the resolver (`lknas.space.resolve`) walks."""
from __future__ import annotations

from lknas.arch import BLOCK_TYPES, DOWNSAMPLE_TYPES, GRID_ORDERS, KERNEL_TYPES, SHARE_SCALES
from lknas.limits import MAX_DEPTH, MAX_DW_RATIO, MAX_KERNEL, MAX_LAYER_SCALE, MAX_M, MAX_MLP_RATIO, MAX_R_C, MAX_WIDTH
from lknas.space.fields import KERNEL_FIELD, REPARAM_FIELD, Field, bool_field, enum_field, float_field, int_field

STAGE_FIELDS: dict[str, Field] = {
    "depth": int_field("depth", 1, MAX_DEPTH),
    "width": int_field("width", 1, MAX_WIDTH),
    "kernel": KERNEL_FIELD,
    "kernel_type": enum_field("kernel_type", KERNEL_TYPES),
    "reparam": REPARAM_FIELD,
    "partial": float_field("partial", 0, 1, lo_open=True),
    "stripe_n": int_field("stripe_n", 1, MAX_KERNEL, odd=True),
    "r_c": int_field("r_c", 0, MAX_R_C),
    "m": int_field("m", 1, MAX_M),
    "k_prime": int_field("k_prime", 1, MAX_KERNEL, odd=True, searchable=False),
    "pos_embed": bool_field("pos_embed"),
    "grid": enum_field("grid", GRID_ORDERS),
    "share_scale": enum_field("share_scale", SHARE_SCALES),
    "block": enum_field("block", BLOCK_TYPES),
    "mlp_ratio": float_field("mlp_ratio", 0, MAX_MLP_RATIO, lo_open=True),
    "downsample": enum_field("downsample", DOWNSAMPLE_TYPES),
    "grn": bool_field("grn"),
    "layer_scale": float_field("layer_scale", 0, MAX_LAYER_SCALE, nullable=True),
    "se": bool_field("se"),
    "dw_ratio": float_field("dw_ratio", 0, MAX_DW_RATIO, lo_open=True),
    "shortcut": bool_field("shortcut"),
}
STAGE_KEYS = tuple(STAGE_FIELDS)
