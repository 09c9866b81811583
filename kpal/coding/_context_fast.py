"""Compiled coding 3 (``kpal[fast]``): the plain kernel of ``_context_kernel``, under numba.

The kernel is one function with no calls, so numba compiles it unchanged;
``kpal.coding.context`` runs the same function uncompiled on small images,
which is how both paths write identical bytes.
"""

from __future__ import annotations

from numba import njit

from ._context_kernel import code as _plain_code

__all__ = ["code"]

#: The kernel of spec/kpal.md §12, compiled once per machine and cached beside the module.
code = njit(cache=True, nogil=True)(_plain_code)
