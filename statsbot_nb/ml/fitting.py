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

Learning curves: given held-out ``validation`` rows and a :class:`~statsbot_nb.ml.curves.CurveRecorder`,
the families that learn in rounds record the training and validation metric after every round, through
the libraries' own evaluation where they have one (XGBoost's and LightGBM's ``eval_set``, CatBoost's
``eval_set`` with ``use_best_model=False``), the staged predictions of gradient boosting (the generator
scikit-learn's own early stopping reads during the fit), and one scoring per MLP epoch. Each set is a
seeded sample of at most :data:`~statsbot_nb.ml.curves.CURVE_ROWS` rows. The held-out rows only measure:
nothing stops early or picks a round on them, so the model is the one a fit without them gives.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import JobError
from .constants import CLASSIFICATION, SEED
from .curves import CURVE_ROWS, CurveRecorder, rows_phrase
from .estimators import EstimatorPlan
from .paramcheck import first_line

log = logging.getLogger("statsbot_nb.train")

Report = Callable[[float, str], None]
FOREST_BATCHES = 10


class Curve:
    """What a fit needs to record a learning curve: the sampled training and validation rows, the recorder."""

    def __init__(self, X: Any, y: np.ndarray, X_val: Any, y_val: np.ndarray, recorder: CurveRecorder) -> None:
        keep = sample_rows(len(y))
        self.X, self.y = (X, y) if keep is None else (X[keep], y[keep])  # the fitted X itself when whole
        self.X_val, self.y_val = X_val, y_val
        self.recorder = recorder
        held = rows_phrase(len(y_val), recorder.held_total)
        recorder.note = (
            f"training: {rows_phrase(len(self.y), len(y))} training rows; validation: {held} held-out test rows"
        )

    def add(self, round_: int, total: int, training: dict[str, float], validation: dict[str, float]) -> None:
        self.recorder.add(round_, total, training, validation)


def sample_rows(n: int, limit: int = CURVE_ROWS) -> np.ndarray | None:
    """Sorted row numbers of a seeded sample of ``limit`` of ``n`` rows; None when all ``n`` are kept."""
    if n <= limit:
        return None
    return np.sort(np.random.default_rng(SEED).choice(n, limit, replace=False))


def fit_with_progress(
    plan: EstimatorPlan,
    X: np.ndarray,
    y: np.ndarray,
    report: Report,
    *,
    validation: tuple[Any, np.ndarray] | None = None,
    recorder: CurveRecorder | None = None,
) -> Any:
    """Fit ``plan.estimator`` on ``X, y`` reporting progress; return the fitted estimator.

    With ``validation`` (held-out rows, already sampled to at most ``CURVE_ROWS``) and a ``recorder``, a
    model that learns in rounds records its learning curve there. Errors raised by the library while
    fitting (a value out of range, a numerical failure) become a :class:`JobError` naming the model type.
    """
    est = plan.estimator
    curve = Curve(X, y, validation[0], validation[1], recorder) if validation and recorder is not None else None
    classify = plan.task_type == CLASSIFICATION
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)
            warnings.simplefilter("ignore", category=FutureWarning)
            _silence_convergence_warnings()
            if plan.family == "forest":
                _fit_forest(est, X, y, report)
            elif plan.family == "gradient_boosting":
                _fit_gradient_boosting(est, X, y, report, curve, classify)
            elif plan.family == "mlp" and _mlp_can_step(est):
                _fit_mlp(est, X, y, report, classify, curve)
            elif plan.family == "xgboost":
                _fit_xgboost(est, X, y, report, curve)
            elif plan.family == "lightgbm":
                _fit_lightgbm(est, X, y, report, curve)
            elif plan.family == "catboost":
                _fit_catboost(est, X, y, report, curve)
            elif plan.family == "keras":
                report(0.0, f"Epoch 0/{est.get_params()['epochs']}")
                est.fit(X, y, report=report, **_keras_curve(curve))
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


def _fit_gradient_boosting(
    est: Any, X: np.ndarray, y: np.ndarray, report: Report, curve: Curve | None, classify: bool
) -> None:
    total = int(est.get_params()["n_estimators"])
    staged: dict[str, Any] = {}

    def monitor(i: int, _est: Any, _locals: dict[str, Any]) -> bool:
        if curve is not None:
            if not staged:  # lazy generators over the stages grown so far, as scikit-learn's early stopping reads
                predict = est.staged_predict_proba if classify else est.staged_predict
                staged["training"], staged["validation"] = predict(curve.X), predict(curve.X_val)
            name = "log_loss" if classify else "rmse"
            curve.add(
                i + 1,
                total,
                {name: _score(est, classify, curve.y, next(staged["training"]))},
                {name: _score(est, classify, curve.y_val, next(staged["validation"]))},
            )
        report((i + 1) / total, f"Boosting stage {i + 1}/{total}")
        return False

    report(0.0, f"Boosting stage 0/{total}")
    est.fit(X, y, monitor=monitor)


def _score(est: Any, classify: bool, y: np.ndarray, out: np.ndarray) -> float:
    """Log-loss of predicted probabilities (columns in ``est.classes_`` order), or the RMSE of predictions."""
    if not classify:
        return float(np.sqrt(np.mean((np.asarray(out, dtype="float64").ravel() - y) ** 2)))
    classes = np.asarray(est.classes_)
    column = np.clip(np.searchsorted(classes, y), 0, len(classes) - 1)
    p = np.where(classes[column] == y, np.asarray(out)[np.arange(len(y)), column], 0.0)
    return float(-np.mean(np.log(np.clip(p, 1e-15, 1.0))))


def _mlp_can_step(est: Any) -> bool:
    params = est.get_params()
    return params.get("solver") in ("adam", "sgd") and not params.get("early_stopping")


def _fit_mlp(est: Any, X: np.ndarray, y: np.ndarray, report: Report, classify: bool, curve: Curve | None) -> None:
    """Epochs by ``partial_fit``, stopping like ``fit`` does when the loss stops improving."""
    params = est.get_params()
    max_iter = int(params["max_iter"])
    tol = float(params["tol"])
    patience = int(params["n_iter_no_change"])
    classes = np.unique(y) if classify else None
    best = np.inf
    stale = 0
    for epoch in range(1, max_iter + 1):
        if classify:
            est.partial_fit(X, y, classes=classes)
        else:
            est.partial_fit(X, y)
        loss = float(est.loss_)
        if not np.isfinite(loss):
            raise JobError(
                "The neural network diverged (its loss became infinite); lower learning_rate_init or scale the data."
            )
        if curve is not None:
            name = "log_loss" if classify else "rmse"
            curve.add(
                epoch,
                max_iter,
                {name: _score(est, classify, curve.y, _in_batches(est, classify, curve.X))},
                {name: _score(est, classify, curve.y_val, _in_batches(est, classify, curve.X_val))},
            )
        stale = stale + 1 if loss > best - tol else 0
        best = min(best, loss)
        report(epoch / max_iter, f"Epoch {epoch}/{max_iter} (loss {loss:.4g})")
        if stale > patience:
            report(1.0, f"Converged after {epoch} epochs")
            break


def _in_batches(est: Any, classify: bool, X: Any) -> np.ndarray:
    """Predictions in slices of the network's training batch size: the matrix products then have the shapes
    training uses, so scoring never wakes BLAS threads that training leaves asleep (5,000 rows at once did,
    and their spinning doubled the fit's time on 2 cores)."""
    batch = est.get_params()["batch_size"]
    size = max(1, min(200, X.shape[0]) if batch == "auto" else int(batch))
    predict = est.predict_proba if classify else est.predict
    return np.concatenate([predict(X[start : start + size]) for start in range(0, X.shape[0], size)])


def _fit_xgboost(est: Any, X: np.ndarray, y: np.ndarray, report: Report, curve: Curve | None) -> None:
    import xgboost

    total = int(est.get_params().get("n_estimators") or 100)

    class _Progress(xgboost.callback.TrainingCallback):
        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            if curve is not None:  # validation_0: the training rows, validation_1: the held-out rows
                training, held = evals_log.get("validation_0", {}), evals_log.get("validation_1", {})
                curve.add(epoch + 1, total, _last(training), _last(held))
            report((epoch + 1) / total, f"Boosting round {epoch + 1}/{total}")
            return False

    est.set_params(callbacks=[_Progress()])
    try:
        report(0.0, f"Boosting round 0/{total}")
        if curve is None:
            est.fit(X, y)
        else:  # the training rows are the fitted X itself when not sampled: XGBoost then reuses its predictions
            est.fit(X, y, eval_set=[(curve.X, curve.y), (curve.X_val, curve.y_val)], verbose=False)
    finally:
        est.set_params(callbacks=None)


def _last(log: Any) -> dict[str, float]:
    """The newest value of each metric in one set of a library's evaluation log."""
    return {str(metric): values[-1] for metric, values in log.items() if len(values)}


def _fit_lightgbm(est: Any, X: np.ndarray, y: np.ndarray, report: Report, curve: Curve | None) -> None:
    import inspect

    total = int(est.get_params().get("n_estimators") or 100)

    def callback(env: Any) -> None:
        done = env.iteration - env.begin_iteration + 1
        if curve is not None:  # (set name, metric, value, higher is better): tuples, or EvalResult since 4.7
            results = env.evaluation_result_list or []
            training = {str(r[1]): r[2] for r in results if r[0] == "training"}
            curve.add(done, total, training, {str(r[1]): r[2] for r in results if r[0] == "validation"})
        report(done / total, f"Boosting round {done}/{total}")

    evals: dict[str, Any] = {}
    if curve is not None:
        names = ["training", "validation"]
        if "eval_X" in inspect.signature(est.fit).parameters:  # 4.7 deprecates eval_set
            evals = {"eval_X": (curve.X, curve.X_val), "eval_y": (curve.y, curve.y_val), "eval_names": names}
        else:
            evals = {"eval_set": [(curve.X, curve.y), (curve.X_val, curve.y_val)], "eval_names": names}
    report(0.0, f"Boosting round 0/{total}")
    est.fit(X, y, callbacks=[callback], **evals)


#: CatBoost options that stop the fit early on an evaluation set: given one, they would act on the held-out rows.
_CATBOOST_DETECTORS = ("od_type", "od_pval", "od_wait", "early_stopping_rounds")


def _fit_catboost(est: Any, X: np.ndarray, y: np.ndarray, report: Report, curve: Curve | None) -> None:
    params = est.get_params()
    total = int(params.get("iterations") or params.get("n_estimators") or 1000)
    detector = any(params.get(name) is not None for name in _CATBOOST_DETECTORS)
    seen: dict[str, int] = {}

    class _Progress:
        """CatBoost calls ``after_iteration(info)`` once per tree; returning True keeps training."""

        def after_iteration(self, info: Any) -> bool:
            done = int(info.iteration)
            if curve is not None:
                new = {}  # a set's newest values, when it grew (``metric_period`` measures every k trees)
                for name, metrics in (info.metrics or {}).items():
                    count = max((len(v) for v in metrics.values()), default=0)
                    if count > seen.get(name, 0):
                        seen[name], new[name] = count, _last(metrics)
                if new:
                    curve.add(done, total, new.get("learn", {}), new.get("validation", {}))
            report(done / total, f"Boosting round {done}/{total}")
            return True

    evals: dict[str, Any] = {}
    if curve is not None:
        if detector:  # no held-out rows for CatBoost: its overfitting detector would stop on them
            curve.recorder.note = (
                f"training: all {len(y):,} training rows; no validation line: an overfitting detector "
                f"({', '.join(n for n in _CATBOOST_DETECTORS if params.get(n) is not None)}) is set, and "
                "given held-out rows it would stop the fit on them"
            )
        else:
            evals = {"eval_set": (curve.X_val, curve.y_val), "use_best_model": False}
            held = rows_phrase(len(curve.y_val), curve.recorder.held_total)
            curve.recorder.note = f"training: all {len(y):,} training rows; validation: {held} held-out test rows"
    report(0.0, f"Boosting round 0/{total}")
    est.fit(X, y, callbacks=[_Progress()], **evals)


def _keras_curve(curve: Curve | None) -> dict[str, Any]:
    """The keyword arguments that make a Keras network record its curve (see :mod:`.kerasnet`)."""
    return {} if curve is None else {"validation": (curve.X_val, curve.y_val), "recorder": curve.recorder}
