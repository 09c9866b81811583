"""The estimators' parameters as scikit-learn's tools expect them.

:class:`kpal.KMeans` and :class:`kpal.GaussianMixture` keep their constructor
arguments as attributes of the same names, so ``get_params`` and
``set_params`` are all that ``sklearn.base.clone`` needs (scikit-learn's
model-selection tools also want the tags of its ``BaseEstimator``, and kpal
does not depend on scikit-learn). The repr shows the parameters that differ
from their defaults, as scikit-learn's estimators print. Names stay kpal's
(``k``, ``seed``), not scikit-learn's (``n_clusters``, ``random_state``).
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

__all__ = ["Params"]


class Params:
    """``get_params``, ``set_params`` and a short repr, from the constructor's signature."""

    @classmethod
    def _param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return [name for name, p in signature.parameters.items()
                if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]

    def get_params(self, deep: bool = True) -> dict[str, Any]:  # noqa: ARG002 - no sub-estimators
        """The constructor's arguments by name, as this object holds them now.

        Parameters
        ----------
        deep : bool, default True
            Accepted for scikit-learn's interface; there are no sub-estimators.

        Returns
        -------
        dict
        """
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> Params:
        """Set constructor arguments by name; they are checked again by ``fit``.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            A name that is not a parameter (the message lists them).
        """
        names = self._param_names()
        for name, value in params.items():
            if name not in names:
                msg = (f"{name!r} is not a parameter of {type(self).__name__}; "
                       f"its parameters are {', '.join(names)}")
                raise ValueError(msg)
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        signature = inspect.signature(type(self).__init__)
        shown = []
        for name in self._param_names():
            value = getattr(self, name)
            default = signature.parameters[name].default
            if isinstance(value, np.ndarray) or isinstance(default, np.ndarray) \
                    or default is inspect.Parameter.empty or value != default:
                shown.append(f"{name}=array(shape={value.shape})"
                             if isinstance(value, np.ndarray) else f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"
