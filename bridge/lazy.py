"""Package exports imported on first use (PEP 562), so a package's light modules stay light.

``bridge.config`` imports each package's options module, and Python runs the package's
``__init__`` first: if that imported the package's exports eagerly, reading the settings would
load aiortc, PyAV, the cloud client and the rule engine. Each package ``__init__`` instead names
its exports for type checkers (under ``TYPE_CHECKING``) and resolves them here when first used::

    __getattr__ = lazy_exports(__name__, {".recorder": ("Recorder",), ...})
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence

__all__ = ["lazy_exports"]


def lazy_exports(package: str, modules: Mapping[str, Sequence[str]]) -> Callable[[str], object]:
    """A module ``__getattr__`` that imports each name from its submodule on first access."""
    where = {name: module for module, names in modules.items() for name in names}

    def __getattr__(name: str) -> object:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        setattr(sys.modules[package], name, value)  # found once; later lookups skip this
        return value

    return __getattr__
