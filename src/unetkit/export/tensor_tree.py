"""Pickle-free storage of nested state (optimizer, scheduler, RNG) in one safetensors file: `torch.save`
pickles, and a pickle can run code when loaded. safetensors alone cannot hold nested dicts and lists
mixing tensors with numbers and strings, so tensors go into its payload under path-like keys and the
rest into a JSON string in its metadata, a placeholder where each tensor was."""

from __future__ import annotations

import json
import math
from typing import Any

import torch


def flatten(tree: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Move every tensor of `tree` into `tensors` (keys start with `prefix`); return the JSON-able rest."""
    if isinstance(tree, torch.Tensor):
        tensors[prefix] = tree.detach().cpu().contiguous()
        return {"__tensor__": prefix}
    if isinstance(tree, dict):
        for key in tree:
            if not (key is None or isinstance(key, bool | int | str)):
                raise TypeError(f"cannot store dict key of type {type(key).__name__}")
        return {"__dict__": [[k, flatten(v, f"{prefix}.{i}", tensors)] for i, (k, v) in enumerate(tree.items())]}
    if isinstance(tree, list | tuple):
        items = [flatten(v, f"{prefix}.{i}", tensors) for i, v in enumerate(tree)]
        return {"__tuple__": items} if isinstance(tree, tuple) else items
    if isinstance(tree, float) and not math.isfinite(tree):
        return {"__float__": repr(tree)}
    if tree is None or isinstance(tree, bool | int | float | str):
        return tree
    raise TypeError(f"cannot store {type(tree).__name__} at {prefix}")


def unflatten(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of `flatten`."""
    if isinstance(tree, list):
        return [unflatten(v, tensors) for v in tree]
    if isinstance(tree, dict):
        if "__tensor__" in tree:
            return tensors[tree["__tensor__"]]
        if "__float__" in tree:
            return float(tree["__float__"])
        if "__tuple__" in tree:
            return tuple(unflatten(v, tensors) for v in tree["__tuple__"])
        return {k: unflatten(v, tensors) for k, v in tree["__dict__"]}
    return tree


def dumps(tree: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> str:
    """JSON text of `tree` with its tensors moved into `tensors`."""
    return json.dumps(flatten(tree, prefix, tensors))


def loads(text: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of `dumps`."""
    return unflatten(json.loads(text), tensors)
