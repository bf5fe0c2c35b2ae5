"""Compiled loops for the few kernels NumPy cannot express without extra passes (n-gram scoring,
token pooling, running sums): Numba compiles a plain-Python function to machine code on first use
and caches it on disk beside its module, so later processes only load it."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any


def compiled(fn: Callable[..., Any]) -> Callable[[], Any]:
    """A loader of ``fn`` compiled by Numba: ``compiled(fn)()`` is the compiled function. Numba is
    imported on the first call only (~0.3 s that a command which runs no kernel should not pay),
    and the compiled code is cached on disk (``cache=True``); ``nogil``: a kernel lets other
    threads run."""

    @functools.cache
    def load() -> Any:
        from numba import njit

        return njit(cache=True, nogil=True)(fn)

    load.__doc__ = f"`{fn.__name__}` compiled by Numba (`distillguard.compiled`)."
    return load
