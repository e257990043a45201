"""Periodic maintenance the worker runs between jobs: a registry of plain callables."""

import logging
from collections.abc import Callable
from importlib import import_module

log = logging.getLogger(__name__)
_tasks: list[Callable[[], object]] = []


def register(func: Callable[[], object] | str) -> Callable[[], object]:
    """Add a callable (or its dotted path) to run every maintenance pass; usable as a decorator."""
    if isinstance(func, str):
        module, _, name = func.rpartition(".")
        func = getattr(import_module(module), name)
    if func not in _tasks:
        _tasks.append(func)
    return func


def tasks() -> list[Callable[[], object]]:
    """The registered callables, in registration order."""
    return list(_tasks)


def run_all() -> dict[str, object]:
    """Run every registered callable once; one that fails is logged and does not stop the rest."""
    results = {}
    for func in list(_tasks):
        name = f"{func.__module__}.{func.__qualname__}"
        try:
            results[name] = func()
        except Exception:
            log.exception("maintenance task %s failed; it runs again next pass", name)
            results[name] = None
    return results
