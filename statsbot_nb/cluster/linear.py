"""Linear and ridge regression from sums: one pass for X^T X and X^T y, one for the held-out metrics.

The solution is scikit-learn's own: the sums are centred with the training means (so the intercept is
not penalised and a one-hot block that is collinear with the intercept gets the same minimum-norm
coefficients as ``LinearRegression``'s least squares), then ``coef = (Xc^T Xc + alpha I)^+ Xc^T yc`` and
``intercept = mean(y) - mean(X) . coef``. The fitted estimator is a plain ``LinearRegression`` / ``Ridge``.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import pandas as pd

from .prep import Layout, coerce, transform
from .sums import merge_moments, moments


def normal_sums(part: pd.DataFrame, layout: Layout, pre: Any, start: int = 0) -> dict[str, Any]:
    """n, sum X, sum y, X^T X and X^T y over one partition's training rows (after preprocessing)."""
    X, target, held_out, _ = coerce(part, layout, start)
    Xt = transform(pre, X[~held_out])
    y = target.to_numpy(dtype="float64")[~held_out]
    return {"n": len(y), "sx": Xt.sum(axis=0), "sy": y.sum(), "xtx": Xt.T @ Xt, "xty": Xt.T @ y}


def solve(parts: list[dict[str, Any]], alpha: float | None, fit_intercept: bool = True) -> tuple[np.ndarray, float]:
    """Coefficients and intercept from every partition's sums (``alpha`` None or 0: least squares, the
    minimum-norm solution where the sums are singular, as scikit-learn's ``Ridge(alpha=0)`` falls back to).
    Without an intercept the sums are not centred and the intercept is 0, as scikit-learn's."""
    n = sum(p["n"] for p in parts)
    xtx = sum(p["xtx"] for p in parts)
    xty = sum(p["xty"] for p in parts)
    mx, my = (sum(p["sx"] for p in parts) / n, sum(p["sy"] for p in parts) / n) if fit_intercept else (0.0, 0.0)
    cxx = xtx - n * np.outer(mx, mx)
    cxy = xty - n * mx * my
    coef = None
    if alpha:
        with contextlib.suppress(np.linalg.LinAlgError):
            coef = np.linalg.solve(cxx + alpha * np.eye(len(cxy)), cxy)
    if coef is None:
        coef = np.linalg.lstsq(cxx + (alpha or 0.0) * np.eye(len(cxy)), cxy, rcond=None)[0]
    return coef, float(my - mx @ coef) if fit_intercept else 0.0


def fitted_estimator(model_type: str, params: dict[str, Any], coef: np.ndarray, intercept: float) -> Any:
    """A plain scikit-learn ``LinearRegression`` or ``Ridge`` holding ``coef`` and ``intercept``."""
    from sklearn.linear_model import LinearRegression, Ridge

    cls = Ridge if model_type == "ridge" else LinearRegression
    est = cls(**{k: v for k, v in params.items() if k in cls().get_params()})
    est.coef_, est.intercept_, est.n_features_in_ = coef, intercept, len(coef)
    if model_type == "ridge":
        est.n_iter_ = None
        est.solver_ = "cholesky"
    return est


def metric_sums(part: pd.DataFrame, layout: Layout, pipeline_model: Any, pre: Any, start: int = 0) -> dict[str, Any]:
    """Sums of the held-out errors in one partition, and its hash-sampled held-out rows (for plots)."""
    X, target, held_out, sampled = coerce(part, layout, start)
    y = target.to_numpy(dtype="float64")[held_out]
    Xt = transform(pre, X[held_out])
    pred = np.asarray(pipeline_model.predict(Xt), dtype="float64") if len(y) else np.zeros(0)
    err = y - pred
    keep = sampled[held_out]
    return {
        "n": len(y),
        "sse": float((err**2).sum()),
        "sae": float(np.abs(err).sum()),
        "y_moments": moments(y),  # centred: a target far from zero keeps the precision r2 needs
        "y_sample": y[keep],
        "pred_sample": pred[keep],
        "X_sample": Xt[keep],
    }


def metrics_from_sums(parts: list[dict[str, Any]]) -> dict[str, float | None]:
    """r2, mse, rmse and mae of the held-out rows from every partition's sums (r2 None for a constant target)."""
    n = sum(p["n"] for p in parts)
    sse = sum(p["sse"] for p in parts)
    sae = sum(p["sae"] for p in parts)
    _, _, sst = merge_moments([p["y_moments"] for p in parts])
    mse = sse / n
    return {
        "r2": float(1 - sse / sst) if sst > 0 else None,
        "mse": float(mse),
        "rmse": float(np.sqrt(mse)),
        "mae": float(sae / n),
    }


__all__ = ["fitted_estimator", "metric_sums", "metrics_from_sums", "normal_sums", "solve"]
