"""Fitting an estimator while reporting real progress from inside the fit.

Each family reports the way it actually grows, so a progress bar moves steadily instead of jumping
from "fitting" to "done":

- random forest / extra trees: grown in ~10 batches with ``warm_start`` ("Growing trees 40/100"), each
  batch a multiple of ``n_jobs`` trees so every core is used;
- gradient boosting: the ``monitor`` callable scikit-learn calls after every stage;
- MLP: one ``partial_fit`` per epoch with the same stopping rule as ``fit`` (``tol``/``n_iter_no_change``)
  when the solver allows it (sgd/adam without early stopping); otherwise a single ``fit``;
- keras: one report per epoch from a Keras callback (see :mod:`.kerasnet`);
- xgboost: a ``TrainingCallback`` per boosting round (removed again before the model is saved, so the
  pickle holds no object of ours); lightgbm and catboost: a callback passed to ``fit`` (never stored in
  the model);
- everything else: one ``fit`` call between a start and an end report.

``report(fraction, message)`` receives a fraction in [0, 1] of the fitting stage.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import JobError
from .constants import CLASSIFICATION
from .estimators import EstimatorPlan
from .paramcheck import first_line

log = logging.getLogger("statsbot_nb.train")

Report = Callable[[float, str], None]
FOREST_BATCHES = 10


def fit_with_progress(plan: EstimatorPlan, X: np.ndarray, y: np.ndarray, report: Report) -> Any:
    """Fit ``plan.estimator`` on ``X, y`` reporting progress; return the fitted estimator.

    Errors raised by the library while fitting (a value out of range, a numerical failure) become a
    :class:`JobError` naming the model type.
    """
    est = plan.estimator
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)
            warnings.simplefilter("ignore", category=FutureWarning)
            _silence_convergence_warnings()
            if plan.family == "forest":
                _fit_forest(est, X, y, report)
            elif plan.family == "gradient_boosting":
                _fit_gradient_boosting(est, X, y, report)
            elif plan.family == "mlp" and _mlp_can_step(est):
                _fit_mlp(est, X, y, report, plan.task_type == CLASSIFICATION)
            elif plan.family == "xgboost":
                _fit_xgboost(est, X, y, report)
            elif plan.family == "lightgbm":
                _fit_lightgbm(est, X, y, report)
            elif plan.family == "catboost":
                _fit_catboost(est, X, y, report)
            elif plan.family == "keras":
                report(0.0, f"Epoch 0/{est.get_params()['epochs']}")
                est.fit(X, y, report=report)
            else:
                report(0.05, f"Fitting {plan.model_type}")
                est.fit(X, y)
                report(1.0, f"Fitted {plan.model_type}")
    except JobError:
        raise
    except MemoryError as exc:
        raise JobError(
            f"{plan.model_type} ran out of memory while fitting; use fewer rows or features, or a lighter "
            "model such as decision_tree."
        ) from exc
    except Exception as exc:
        log.warning("Fitting %s failed", plan.model_type, exc_info=True)
        raise JobError(f"{plan.model_type} could not be trained with these settings: {first_line(exc)}") from exc
    return est


def _silence_convergence_warnings() -> None:
    from sklearn.exceptions import ConvergenceWarning

    warnings.simplefilter("ignore", category=ConvergenceWarning)


def _fit_forest(est: Any, X: np.ndarray, y: np.ndarray, report: Report) -> None:
    """Grow the forest in about :data:`FOREST_BATCHES` batches, each a whole multiple of the threads it may
    use, so ``n_jobs`` keeps every core it was given busy in every batch (a batch of one tree runs on one
    core) while the bar still moves. The features are cast to float32 once, as the trees would on every
    batch; the trees come out the same.
    """
    from joblib import effective_n_jobs

    total = int(est.get_params()["n_estimators"])
    threads = max(1, int(effective_n_jobs(est.get_params().get("n_jobs"))))
    step = max(1, -(-total // FOREST_BATCHES))
    step = -(-step // threads) * threads
    if not hasattr(X, "tocsc"):
        X = np.asarray(X, dtype=np.float32)
    est.set_params(warm_start=True)
    try:
        grown = 0
        report(0.0, f"Growing trees 0/{total}")
        while grown < total:
            grown = min(total, grown + step)
            est.set_params(n_estimators=grown)
            est.fit(X, y)
            report(grown / total, f"Growing trees {grown}/{total}")
    finally:
        est.set_params(warm_start=False)


def _fit_gradient_boosting(est: Any, X: np.ndarray, y: np.ndarray, report: Report) -> None:
    total = int(est.get_params()["n_estimators"])

    def monitor(i: int, _est: Any, _locals: dict[str, Any]) -> bool:
        report((i + 1) / total, f"Boosting stage {i + 1}/{total}")
        return False

    report(0.0, f"Boosting stage 0/{total}")
    est.fit(X, y, monitor=monitor)


def _mlp_can_step(est: Any) -> bool:
    params = est.get_params()
    return params.get("solver") in ("adam", "sgd") and not params.get("early_stopping")


def _fit_mlp(est: Any, X: np.ndarray, y: np.ndarray, report: Report, classifier: bool) -> None:
    """Epochs by ``partial_fit``, stopping like ``fit`` does when the loss stops improving."""
    params = est.get_params()
    max_iter = int(params["max_iter"])
    tol = float(params["tol"])
    patience = int(params["n_iter_no_change"])
    classes = np.unique(y) if classifier else None
    best = np.inf
    stale = 0
    for epoch in range(1, max_iter + 1):
        if classifier:
            est.partial_fit(X, y, classes=classes)
        else:
            est.partial_fit(X, y)
        loss = float(est.loss_)
        if not np.isfinite(loss):
            raise JobError(
                "The neural network diverged (its loss became infinite); lower learning_rate_init or scale the data."
            )
        stale = stale + 1 if loss > best - tol else 0
        best = min(best, loss)
        report(epoch / max_iter, f"Epoch {epoch}/{max_iter} (loss {loss:.4g})")
        if stale > patience:
            report(1.0, f"Converged after {epoch} epochs")
            break


def _fit_xgboost(est: Any, X: np.ndarray, y: np.ndarray, report: Report) -> None:
    import xgboost

    total = int(est.get_params().get("n_estimators") or 100)

    class _Progress(xgboost.callback.TrainingCallback):
        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            report((epoch + 1) / total, f"Boosting round {epoch + 1}/{total}")
            return False

    est.set_params(callbacks=[_Progress()])
    try:
        report(0.0, f"Boosting round 0/{total}")
        est.fit(X, y)
    finally:
        est.set_params(callbacks=None)


def _fit_lightgbm(est: Any, X: np.ndarray, y: np.ndarray, report: Report) -> None:
    total = int(est.get_params().get("n_estimators") or 100)

    def callback(env: Any) -> None:
        done = env.iteration - env.begin_iteration + 1
        report(done / total, f"Boosting round {done}/{total}")

    report(0.0, f"Boosting round 0/{total}")
    est.fit(X, y, callbacks=[callback])


def _fit_catboost(est: Any, X: np.ndarray, y: np.ndarray, report: Report) -> None:
    params = est.get_params()
    total = int(params.get("iterations") or params.get("n_estimators") or 1000)

    class _Progress:
        """CatBoost calls ``after_iteration(info)`` once per tree; returning True keeps training."""

        def after_iteration(self, info: Any) -> bool:
            done = int(info.iteration)
            report(done / total, f"Boosting round {done}/{total}")
            return True

    report(0.0, f"Boosting round 0/{total}")
    est.fit(X, y, callbacks=[_Progress()])
