"""statsbot_nb.ml.estimators: model types, optional libraries and hyperparameter checks."""

from __future__ import annotations

import importlib.util
import os

import extras
import pytest

from statsbot_nb.errors import JobError
from statsbot_nb.ml import estimators
from statsbot_nb.ml.estimators import build_estimator

HAS_XGB = importlib.util.find_spec("xgboost") is not None
HAS_LGBM = importlib.util.find_spec("lightgbm") is not None
HAS_CATBOOST = importlib.util.find_spec("catboost") is not None


def test_capabilities_list_installed_types_and_versions() -> None:
    types = estimators.available_model_types()
    for name in (
        "linear",
        "ridge",
        "lasso",
        "elasticnet",
        "polynomial",
        "logistic",
        "decision_tree",
        "random_forest",
        "gradient_boosting",
        "svm",
        "naive_bayes",
        "mlp_regression",
        "mlp_classification",
    ):
        assert name in types
    assert ("xgboost_regression" in types) == HAS_XGB
    assert ("lightgbm_multiclass" in types) == HAS_LGBM
    assert ("catboost_regression" in types) == HAS_CATBOOST
    libs = estimators.installed_libraries()
    assert libs["scikit-learn"]
    assert (libs["xgboost"] is not None) == HAS_XGB


@pytest.mark.parametrize(
    ("model_type", "task", "cls_name"),
    [
        ("linear", "regression", "LinearRegression"),
        ("ridge", "regression", "Ridge"),
        ("lasso", "regression", "Lasso"),
        ("elasticnet", "regression", "ElasticNet"),
        ("polynomial", "regression", "Pipeline"),
        ("logistic", "classification", "LogisticRegression"),
        ("naive_bayes", "classification", "GaussianNB"),
        ("decision_tree", "regression", "DecisionTreeRegressor"),
        ("decision_tree", "classification", "DecisionTreeClassifier"),
        ("random_forest", "regression", "RandomForestRegressor"),
        ("random_forest", "classification", "RandomForestClassifier"),
        ("gradient_boosting", "classification", "GradientBoostingClassifier"),
        ("svm", "regression", "SVR"),
        ("svm", "classification", "SVC"),
        ("mlp", "regression", "MLPRegressor"),
        ("mlp", "classification", "MLPClassifier"),
        ("mlp_regression", "regression", "MLPRegressor"),
        ("mlp_classification", "classification", "MLPClassifier"),
    ],
)
def test_sklearn_types_build_the_right_estimator(model_type: str, task: str, cls_name: str) -> None:
    plan = build_estimator(model_type, task, None)
    assert type(plan.estimator).__name__ == cls_name
    params = plan.estimator.get_params()
    if "random_state" in params:
        assert params["random_state"] == estimators.SEED
    if model_type == "svm" and task == "classification":
        assert params["probability"] is True
    if model_type == "polynomial":
        assert params["poly__degree"] == 2


@pytest.mark.parametrize(
    ("model_type", "task", "cls_name"),
    [
        extras.param("xgboost_regression", "regression", "XGBRegressor"),
        extras.param("xgboost_binary_classification", "classification", "XGBClassifier"),
        extras.param("xgboost_multiclass", "classification", "XGBClassifier"),
        extras.param("lightgbm_regression", "regression", "LGBMRegressor"),
        extras.param("lightgbm_multiclass", "classification", "LGBMClassifier"),
    ],
)
def test_boosting_libraries_pick_regressor_by_name(model_type: str, task: str, cls_name: str) -> None:
    plan = build_estimator(model_type, task, {"n_estimators": 7})
    assert type(plan.estimator).__name__ == cls_name
    assert plan.estimator.get_params()["n_estimators"] == 7
    assert plan.estimator.get_params()["random_state"] == estimators.SEED


def test_task_the_type_cannot_do_lists_valid_types() -> None:
    with pytest.raises(JobError) as err:
        build_estimator("logistic", "regression", None)
    msg = str(err.value)
    assert "cannot be used for regression" in msg
    assert "linear" in msg and "random_forest" in msg and "logistic," not in msg
    with pytest.raises(JobError, match=r"cannot be used for classification"):
        build_estimator("xgboost_regression", "classification", None)
    with pytest.raises(JobError, match=r"cannot be used for regression"):
        build_estimator("naive_bayes", "regression", None)


@pytest.mark.parametrize("bad", ["", "rocket", "../linear", "LINEAR", None, 5, "xgboost"])
def test_unknown_model_type_is_a_sentence(bad: object) -> None:
    with pytest.raises(JobError, match=r"model_type .* use one of: linear"):
        build_estimator(bad, "regression", None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("model_type", "hidden", "package"),
    [
        ("catboost_regression", ("catboost",), "catboost"),
        ("keras_classification", ("keras",), "keras jax"),
        ("keras_classification", ("jax", "tensorflow", "torch"), "keras jax"),  # Keras with no backend
    ],
)
def test_missing_optional_library_names_the_pip_package(model_type: str, hidden: tuple[str, ...], package: str) -> None:
    """With the library hidden from imports (whether or not it is installed), the sentence names the package."""
    import subprocess
    import sys

    code = (
        "import importlib.abc, sys\n"
        "class Hide(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        f"        if name.split('.')[0] in {hidden!r}:\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Hide())\n"
        "from statsbot_nb.errors import JobError\n"
        "from statsbot_nb.ml.estimators import available_model_types, build_estimator\n"
        f"print('listed', {model_type!r} in available_model_types())\n"
        "try:\n"
        f"    build_estimator({model_type!r}, {model_type.split('_', 1)[1]!r}, None)\n"
        "except JobError as exc:\n"
        "    print(exc)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}  # else the user's choice counts
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert "listed False" in out
    assert f"pip install {package}" in out and f"{model_type} needs the" in out


@pytest.mark.extra("catboost")
def test_catboost_builds_when_installed() -> None:
    plan = build_estimator("catboost_regression", "regression", {"iterations": 20})
    assert plan.family == "catboost" and plan.estimator.get_params()["iterations"] == 20


@pytest.mark.extra("keras")
def test_keras_builds_when_installed() -> None:
    plan = build_estimator("keras_classification", "classification", {"epochs": 5, "hidden_layers": [16]})
    assert plan.family == "keras" and plan.scale_numeric
    assert plan.estimator.get_params()["hidden_layers"] == (16,)
    with pytest.raises(JobError, match="valid names are"):
        build_estimator("keras_regression", "regression", {"layers": 3})


def test_unknown_hyperparameter_lists_valid_names() -> None:
    with pytest.raises(JobError) as err:
        build_estimator("random_forest", "regression", {"n_trees": 5})
    msg = str(err.value)
    assert "'n_trees'" in msg
    assert "valid names are:" in msg
    for name in ("n_estimators", "max_depth", "min_samples_leaf", "random_state"):
        assert name in msg


@pytest.mark.extra("xgboost")
def test_unknown_hyperparameter_for_xgboost_lists_its_names() -> None:
    with pytest.raises(JobError, match=r"valid names are: .*learning_rate.*max_depth"):
        build_estimator("xgboost_regression", "regression", {"n_trees": 3})  # `seed` is xgboost's own name


@pytest.mark.parametrize(
    ("params", "pattern"),
    [
        ({"n_estimators": "many"}, "'n_estimators' .* must be a number"),
        ({"n_estimators": [1, 2]}, "'n_estimators' .* must be a number"),
        ({"bootstrap": 3}, "'bootstrap' .* must be true or false"),
        ({"criterion": {"a": 1}}, "'criterion' .* single value"),
        ({"n_estimators": 0}, "does not accept: The 'n_estimators' parameter"),
        ({"max_depth": -2}, "does not accept: The 'max_depth' parameter"),
        ({"criterion": "best"}, "does not accept: The 'criterion' parameter"),
        ({"warm_start": True}, "'warm_start' cannot be set"),
    ],
)
def test_bad_values_are_sentences(params: dict[str, object], pattern: str) -> None:
    with pytest.raises(JobError, match=pattern) as err:
        build_estimator("random_forest", "classification", params)
    assert "Traceback" not in str(err.value)
    assert str(err.value).endswith(".")


def test_hyperparameters_must_be_an_object() -> None:
    with pytest.raises(JobError, match=r"hyperparameters .* must be an object"):
        build_estimator("ridge", "regression", [1, 2])  # type: ignore[arg-type]


def test_user_values_override_our_defaults_without_duplicate_keywords() -> None:
    plan = build_estimator("random_forest", "classification", {"random_state": 7, "n_estimators": 12})
    params = plan.estimator.get_params()
    assert params["random_state"] == 7 and params["n_estimators"] == 12
    assert plan.hyperparameters["random_state"] == 7
    plan = build_estimator("logistic", "classification", {"max_iter": 50, "C": 0.5})
    assert plan.estimator.get_params()["max_iter"] == 50
    assert plan.estimator.get_params()["C"] == 0.5


def test_text_values_are_coerced_and_lists_become_tuples() -> None:
    plan = build_estimator(
        "random_forest", "regression", {"n_estimators": "50", "max_depth": "none", "bootstrap": "false"}
    )
    params = plan.estimator.get_params()
    assert params["n_estimators"] == 50 and params["max_depth"] is None and params["bootstrap"] is False
    plan = build_estimator("mlp_regression", "regression", {"hidden_layer_sizes": [16, 8], "alpha": 1})
    params = plan.estimator.get_params()
    assert params["hidden_layer_sizes"] == (16, 8)
    assert params["alpha"] == 1.0 and isinstance(params["alpha"], float)
    assert plan.hyperparameters["hidden_layer_sizes"] == [16, 8]


def test_polynomial_accepts_friendly_degree() -> None:
    plan = build_estimator("polynomial", "regression", {"degree": 3, "fit_intercept": False})
    params = plan.estimator.get_params()
    assert params["poly__degree"] == 3 and params["linear__fit_intercept"] is False
    with pytest.raises(JobError, match=r"valid names are: .*degree"):
        build_estimator("polynomial", "regression", {"power": 3})


def test_task_from_model_type() -> None:
    assert estimators.task_from_model_type("mlp_regression") == "regression"
    assert estimators.task_from_model_type("mlp_classification") == "classification"
    assert estimators.task_from_model_type("keras_regression") == "regression"
    assert estimators.task_from_model_type("lightgbm_binary_classification") == "classification"
    assert estimators.task_from_model_type("random_forest") is None
    assert estimators.task_from_model_type("linear") == "regression"


@pytest.mark.parametrize("name", ["memory", "train_dir", "callbacks", "early_stopping_rounds"])
def test_parameters_that_touch_files_or_progress_are_refused(name: str) -> None:
    with pytest.raises(JobError, match=rf"'{name}' cannot be set"):
        build_estimator("polynomial", "regression", {name: "/tmp/x"})


def test_type_checks_use_the_librarys_own_defaults() -> None:
    plan = build_estimator("mlp_classification", "classification", {"random_state": None})
    assert plan.estimator.get_params()["random_state"] is None
    with pytest.raises(JobError, match=r"'max_iter' .* must be a number"):
        build_estimator("mlp_classification", "classification", {"max_iter": None})


@pytest.mark.extra("xgboost")
def test_a_nan_default_takes_numbers_only() -> None:
    """xgboost's `missing` defaults to NaN: null would pass fitting and fail only when scoring."""
    with pytest.raises(JobError, match=r"'missing' .* must be a number"):
        build_estimator("xgboost_regression", "regression", {"missing": None})
    assert build_estimator("xgboost_regression", "regression", {"missing": 0}).estimator.missing == 0.0
