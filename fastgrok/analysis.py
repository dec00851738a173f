"""Analysis of training tables: summaries per step, per run and per sweep point.

A table has one row per (run, evaluated step), or per (grid point, run, step) for a sweep,
with the history's metric columns (:attr:`fastgrok.Result.history`).
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def round_sig(x: float) -> float:
    """X rounded to 12 significant digits: 1e-3 * 1e-12 is 1e-15, not 1.0000000000000001e-15."""
    return float(f"{x:.12g}")


def summarize(history: pd.DataFrame, by=()) -> pd.DataFrame:
    """Per-step median, 20% and 80% quantiles over runs of every metric.

    Parameters
    ----------
    history : pandas.DataFrame
        Rows (run, step, metrics...), e.g. :attr:`Result.history` or a sweep's table.
    by : sequence of str
        Further columns to group by (a sweep's grid fields).

    Returns
    -------
    pandas.DataFrame
        One row per (by..., step): <metric>_median, <metric>_q20, <metric>_q80 over the runs
        whose metric is not NaN, and with a ``diverged`` column, runs_diverged.
    """
    keys = [*by, "step"]
    metrics = [c for c in history.columns if c not in (*keys, "run", "diverged")]
    g = history.groupby(keys, sort=True)[metrics]
    parts = {"median": g.median(), "q20": g.quantile(0.2), "q80": g.quantile(0.8)}
    cols = {f"{mt}_{stat}": parts[stat][mt] for mt in metrics for stat in ("median", "q20", "q80")}
    if "diverged" in history:  # the diverged runs' metrics are NaN: left out of the quantiles
        cols["runs_diverged"] = history.groupby(keys, sort=True)["diverged"].sum()
    return pd.DataFrame(cols).reset_index()


def grok_steps(table: pd.DataFrame, by, threshold=0.9) -> pd.Series:
    """Per run: the first evaluated step with test_acc >= ``threshold`` (inf if none).

    Indexed by (*by, run); ``table`` has one row per (by..., run, step).
    """
    hit = table.step.where(table.test_acc >= threshold)
    return hit.groupby([table[k] for k in [*by, "run"]], sort=True).min().fillna(np.inf)


def point_summaries(table: pd.DataFrame, names, threshold=0.9) -> pd.DataFrame:
    """Final medians and grokking times per grid point.

    grok_step of a run: the first evaluated step with test_acc >= ``threshold``; runs that never
    get there count in ``runs_never``. ``grok_step_median`` is <NA> when at least half the runs
    never grok (the median run never does). ``runs_diverged`` counts the runs whose outputs
    stopped being finite (their NaN accuracies are left out of the final medians; a diverged
    run that had not grokked counts as never grokking). Patch data add the final medians of
    signal_learning and noise_memorization.
    """
    names = list(names)
    grok = grok_steps(table, names, threshold)
    rows = []
    for values, g in table.groupby(names, sort=False):
        values = values if isinstance(values, tuple) else (values,)
        last = g[g.step == g.step.max()]
        steps = grok.loc[values].to_numpy() if len(names) > 1 else grok.loc[values[0]].to_numpy()
        never = int(np.isinf(steps).sum())
        # The median run groks unless at least half never do ("never" sorts as +infinity).
        med = int(np.median(steps)) if never < len(steps) / 2 else pd.NA
        diverged = (int(g.loc[g["diverged"].eq(True), "run"].nunique()) if "diverged" in g
                    else 0)
        row = {**dict(zip(names, values, strict=True)), "runs": len(steps),
               "final_train_acc_median": _median(last.train_acc),
               "final_test_acc_median": _median(last.test_acc),
               "grok_step_median": med, "runs_never": never, "runs_diverged": diverged}
        for col in ("signal_learning", "noise_memorization"):  # patch data
            if col in g:
                row[f"final_{col}_median"] = _median(last[col])
        rows.append(row)
    out = pd.DataFrame(rows)
    out["grok_step_median"] = out["grok_step_median"].astype("Int64")
    return out


def _median(values: pd.Series) -> float:
    """The median of the values that are not NaN; NaN when every run diverged.

    (Some pandas versions warn on the median of nothing.)
    """
    return float(values.median()) if values.notna().any() else np.nan


def per_run(table: pd.DataFrame, names, threshold: float) -> pd.DataFrame:
    """One row per (point, run): final train/test accuracy, test accuracy at step 1, grok step."""
    grok = grok_steps(table, names, threshold)
    rows = []
    last = table.step.max()
    for key, g in table.groupby([*names, "run"], sort=True):
        g = g.set_index("step")
        rows.append({**dict(zip([*names, "run"], key, strict=True)),
                     "final_train": g.train_acc.get(last, np.nan),
                     "final_test": g.test_acc.get(last, np.nan),
                     "test_at_1": g.test_acc.get(1, np.nan), "grok": float(grok.loc[key])})
    return pd.DataFrame(rows)


def grok_median(runs: pd.DataFrame, by) -> pd.Series:
    """Median grokking step per point; inf where the median run never groks."""
    return runs.groupby(by, sort=True)["grok"].median()


def cnn_boundary_variable(n, mu_norm, sigma_p, d, activation="relu", power=None):
    """The theory's variable for benign against harmful overfitting of the two-layer CNN.

    ReLU (Kou et al. 2023): n ||mu||^4 / (sigma_p^4 d) = n SNR^4 d, with SNR = ||mu|| /
    (sigma_p sqrt(d)); benign above a constant, harmful below another. ReLU^q (Cao et al.
    2022, q = ``power``, default 2): n SNR^q. Arrays broadcast.
    """
    snr = np.asarray(mu_norm, np.float64) / (sigma_p * np.sqrt(d))
    if activation == "relu_power":
        return np.asarray(n, np.float64) * snr ** (2.0 if power is None else power)
    return np.asarray(n, np.float64) * snr ** 4 * d
