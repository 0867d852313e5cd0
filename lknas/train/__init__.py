"""Training: the proxy trainer used by every search trial, and the shared timm recipe."""
from lknas.train.proxy import STATUSES, ProxyResult, evaluate, train_proxy

__all__ = ["STATUSES", "ProxyResult", "evaluate", "train_proxy"]
