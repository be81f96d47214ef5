"""The conventions table (tbl-conventions) against the libraries installed here: each row's
sum-form α is checked on a tiny fit, from the library's own behaviour, not its documentation.
Rows of libraries that are not installed (glmnet, Keras, PyTorch, statsmodels) are sources
only."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import ElasticNet, LogisticRegression, Ridge, SGDRegressor
from sklearn.neural_network import MLPRegressor

from study import fit_polynomial_ridge
from study.report.tables import CONVENTIONS


def _data(m=40, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-0.5, 2.0, m)  # an asymmetric range: a wrong factor shows
    return x, 1 + 2 * x + 0.7 * rng.normal(size=m)


def _row(library: str) -> tuple[str, ...]:
    (row,) = [r for r in CONVENTIONS if r[0].startswith(library)]
    return row


def test_ridge_is_the_m_scaling():
    assert "(`m`)" in _row("scikit-learn `Ridge")[2]
    x, y = _data()
    feats = np.vander(x, 4, increasing=True)[:, 1:]
    for a in (0.01, 1.0, 30.0):
        ridge = Ridge(alpha=a).fit(feats, y)
        w = fit_polynomial_ridge(x, y, degree=3, lam=a, scaling="m")
        np.testing.assert_allclose(w, np.r_[ridge.intercept_, ridge.coef_], rtol=1e-8)


def test_elastic_net_without_l1_is_the_none_scaling():
    assert "m·a (`none`)" in _row("scikit-learn `ElasticNet")[2]
    x, y = _data()
    feats = np.vander(x, 3, increasing=True)[:, 1:]
    for a in (0.01, 0.1):
        net = ElasticNet(alpha=a, l1_ratio=0.0, tol=1e-14, max_iter=1_000_000).fit(feats, y)
        w = fit_polynomial_ridge(x, y, degree=2, lam=a, scaling="none")
        np.testing.assert_allclose(w, np.r_[net.intercept_, net.coef_], rtol=1e-6)


def test_sgd_regressor_is_the_none_scaling():
    assert "m·a (`none`)" in _row("scikit-learn `SGDRegressor")[2]
    x, y = _data(m=200)
    feats = x[:, None]
    a = 0.05
    sgd = SGDRegressor(
        alpha=a,
        penalty="l2",
        average=True,
        max_iter=3000,
        tol=None,
        eta0=0.01,
        learning_rate="constant",
        random_state=0,
    ).fit(feats, y)
    w_none = fit_polynomial_ridge(x, y, degree=1, lam=a, scaling="none")
    w_m = fit_polynomial_ridge(x, y, degree=1, lam=a, scaling="m")
    got = np.r_[sgd.intercept_, sgd.coef_]
    np.testing.assert_allclose(got, w_none, rtol=2e-3)
    assert abs(got[1] - w_m[1]) > 20 * abs(got[1] - w_none[1])


def test_logistic_regression_is_alpha_one_over_2c():
    """C·Σ log-loss + ½‖w‖²: at the fit, the gradient of Σ log-loss + α‖w‖² vanishes for
    α = 1/(2C) (intercept unpenalised under lbfgs)."""
    assert "1/(2C)" in _row("scikit-learn `LogisticRegression")[2]
    rng = np.random.default_rng(3)
    x = rng.uniform(-0.5, 2.0, 80)
    labels = (rng.random(80) < 1 / (1 + np.exp(-(0.3 + 1.5 * (x - 0.7))))).astype(float)
    X = np.column_stack([x, x**2])
    for C in (0.05, 0.7):
        fit = LogisticRegression(C=C, tol=1e-12, max_iter=10_000).fit(X, labels)
        w, b = fit.coef_[0], fit.intercept_[0]
        p = 1 / (1 + np.exp(-(X @ w + b)))

        def gradient(alpha, p=p, w=w):
            return np.r_[np.sum(p - labels), X.T @ (p - labels) + 2 * alpha * w]

        assert np.max(np.abs(gradient(1 / (2 * C)))) < 1e-6
        assert np.max(np.abs(gradient(1 / C))) > 1e-2


def _mlp_first_layer(alpha, batch, m=64, eta=0.01):
    """Weights of the first layer after one epoch of plain SGD on inputs that are all zero:
    the data then pull nothing on them, and only the penalty shrinks them."""
    X, y = np.zeros((m, 1)), np.zeros(m)
    mlp = MLPRegressor(
        hidden_layer_sizes=(3,),
        activation="identity",
        solver="sgd",
        alpha=alpha,
        batch_size=batch,
        learning_rate="constant",
        learning_rate_init=eta,
        momentum=0.0,
        max_iter=1,
        shuffle=False,
        random_state=0,
        early_stopping=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp.fit(X, y)
    return mlp.coefs_[0]


@pytest.mark.parametrize("batch", [8, 16, 64])
def test_mlp_regressor_divides_its_penalty_by_the_batch_size(batch):
    assert "*batch* size" in _row("scikit-learn `MLPRegressor")[2]
    m, eta, a = 64, 0.01, 3.0
    start = _mlp_first_layer(0.0, batch)
    after = _mlp_first_layer(a, batch)
    steps = m // batch
    # the penalty (a/2b)‖W‖² per batch of b: each step multiplies W by 1 − η·a/b
    np.testing.assert_allclose(after, start * (1 - eta * a / batch) ** steps, rtol=1e-10)
    if batch != m:  # divided by m instead, the decay would differ
        assert not np.allclose(after, start * (1 - eta * a / m) ** steps, rtol=1e-3)
