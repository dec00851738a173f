"""The interface every engine implements, and the one place evaluation metrics are assembled."""
from __future__ import annotations

from functools import partial

import numpy as np

from .. import reference, tunables


class Engine:
    """The training state of a batch of runs, for one method, over one backend's operations.

    An engine knows how to build its state from run sources (:mod:`fastgrok.sources`), take one
    gradient step for every run of the batch, and report the evaluation quantities. The step
    loop, evaluation schedule, progress and history belong to the driver
    (:mod:`fastgrok.driver`). Subclasses set ``method``; the registry
    (:mod:`fastgrok.engines.registry`) pairs each method with each backend's operations.

    Parameters
    ----------
    sources : list of fastgrok.sources.Source
        One per run of the batch (at most :meth:`max_batch`).
    lr : float
        Step size.
    dtype : {"float32", "float64"}
        Working precision.
    n_threads : int, optional
        Threads, as yielded by the operations' ``runtime``.
    on_built : callable, optional
        Called once per run when its state is ready (progress of long builds).
    ops : fastgrok.engines.ops_base.Ops
        The backend's operations (the registry passes them; tests pass NumPy operations to
        run an engine's logic anywhere).
    model : fastgrok.model.Model, optional
        Activation and loss (default: ReLU and the logistic loss, the paper's network).
    """

    method = ""

    @classmethod
    def max_batch(cls, n, p, m, n_test, dtype, ops) -> int:
        """How many runs one engine over ``ops`` (an operations class) may hold at once.

        1 unless the engine batches runs.
        """
        return 1

    @classmethod
    def batch_multiple(cls, ops) -> int:
        """What a batch's size is best a multiple of: the threads its runs are shared out to.

        1 unless the engine batches runs on the host threads.
        """
        return 1

    def step(self, prepare_eval: bool = True) -> None:
        """Advance every run by one full-batch gradient-descent step.

        ``prepare_eval`` says whether :meth:`evaluate` will be called before the next step, so
        engines that can fuse the evaluation quantities into the step's pass over p do so.
        """
        raise NotImplementedError

    def advance(self, steps: int, prepare_eval: bool = True) -> None:
        """Advance every run by ``steps`` steps (no evaluation in between).

        ``prepare_eval`` is about the state after the last. Engines that gain from taking several
        steps in one call (the gram engine: a run's state stays in cache) override this.
        """
        for i in range(steps):
            self.step(prepare_eval=prepare_eval and i == steps - 1)

    def steps_per_call(self) -> int:
        """How many steps the driver hands this engine in its next call, at most.

        ``tunables.STEPS_PER_CALL``: the progress bar and the checkpoints move once per call.
        The numbers do not depend on it (but for the linear regime's Z and training outputs, at
        float64 rounding: ``tunables.GRAM_LINEAR_BLOCK``).
        """
        return tunables.STEPS_PER_CALL

    def plan_evaluations(self, schedule) -> None:
        """Announce the steps at which the driver will evaluate.

        A hint: an engine may keep evaluation quantities up to date as it steps when
        evaluations are frequent.
        """

    def segment(self, segment, projections: bool = True, deferred: bool = False) -> list:
        """Take the steps of ``segment`` and return the evaluations on the way.

        ``segment`` is a list of (steps, evaluate) in order; the evaluations (:meth:`evaluate`)
        after the pairs that ask for one come back in order. With ``deferred``, each comes back
        as a function of no arguments that gives it: an engine whose metrics depend on the
        outputs alone leaves them to whoever calls it (the driver's recording thread).

        One call can cover several evaluations, so engines that hold many runs (the gram
        engine on the CPU) take each run's steps and evaluations in one task, its state in
        cache; the numbers are those of :meth:`advance` and :meth:`evaluate` in turn, which is
        what this default does.
        """
        out = []
        for k, ev in segment:
            self.advance(k, prepare_eval=ev)
            if ev:
                out.append(self.evaluate(projections))
        return [partial(_given, evs) for evs in out] if deferred else out

    def evaluate(self, projections: bool = True) -> list:
        """One dict per run of the metrics at the current step.

        Keys: train_acc, train_loss, test_acc, test_loss, test_acc_se and (if asked and the
        means are known) the projections P1 = W mu1, P2 = W mu2.
        """
        raise NotImplementedError

    def advance_until_interpolation(self, steps: int):
        """Step every run until it classifies every training label correctly, at most ``steps``.

        Returns (taken, fired): the runs that did not fire took ``taken`` steps; ``fired[i]`` is
        the step (1..taken) after which run i first interpolated (its state stays there) or 0.
        This default steps all runs together and returns at the first step at which any fires.
        """
        for t in range(1, steps + 1):
            self.advance(1, prepare_eval=False)
            ok = [reference.interpolates(np.asarray(s.y), f)
                  for s, f in zip(self.sources, self.outputs(), strict=True)]
            if any(ok):
                return t, [t if o else 0 for o in ok]
        return steps, [0] * len(self.sources)

    def outputs(self, test: bool = False) -> list:
        """Per run, the training outputs f (n,) now, float64 on the host (test outputs too).

        The cheap read a research loop or a stop rule needs: no metrics, no projections. With
        ``test`` a list of (f, ft) pairs.
        """
        evs = self.evaluate(projections=False)
        return [(ev["f"], ev["ft"]) if test else ev["f"] for ev in evs]

    def data_projections(self) -> list | None:
        """Per run, the training data's projections X mu (n, 2) on the host in float64.

        For the plane figure; None when the means are not known.
        """
        return None

    @staticmethod
    def estimate_bytes(n, p, m, n_test, dtype, ops) -> int:
        """Bytes of state this engine allocates for one run over ``ops`` (an operations class).

        Used to refuse what cannot fit.
        """
        raise NotImplementedError

    def network(self, i):
        """Run i's network (the batch's i-th source) now (:class:`fastgrok.network.Network`).

        Holds copies: later steps do not change it.
        """
        raise NotImplementedError

    def select(self, keep) -> None:
        """Keep only the runs at positions ``keep`` of the batch (the others leave it).

        Engines that hold one run only end (``keep`` empty) or keep it.
        """
        keep = list(keep)
        if keep and keep != list(range(len(self.sources))):
            raise NotImplementedError(f"{type(self).__name__} cannot drop runs from a batch")
        self.sources = [self.sources[i] for i in keep]

    def __getstate__(self) -> dict:
        """The engine's state for a checkpoint: everything but the backend's operations.

        The run that resumes attaches its own operations (``engine.ops = ...``).
        """
        return {**self.__dict__, "ops": None}

    def counters(self) -> dict:
        """What the engine did beyond plain steps, as integer counters.

        They add up over batches: the driver sums them, and the operations'
        ``describe_counters`` turns the sums into ``Result.info`` entries. Empty by default.
        """
        return {}


def next_second_layer(Z, y, a, model):
    """A run's second layer after one step when it is trained (float64, on the host).

    From the run's pre-activations Z (n, m) before the step, as the reference takes it:
    a <- (1 - lr_second lambda) a + (lr_second / n) sum_i g_i y_i phi(z_ij).
    """
    Z = np.asarray(Z, np.float64)
    f = reference.forward_from_preactivations(Z, a, model.act)
    increment = reference.second_layer_increment(Z, y, f, model.lr_second, model.act,
                                                 model.loss)
    if model.weight_decay:
        a = a * (1.0 - model.lr_second * model.weight_decay)
    return a + increment


def _given(x):
    return x


def runs_metrics(F, Y, FT=None, YT=None, P=None, loss="logistic", regression=False) -> list:
    """:func:`run_metrics` of every run of a batch, the accuracies and losses in one pass.

    ``F``, ``FT`` and ``P``: per run (lists or stacked); ``Y`` (R, n) and ``YT`` stacked. The
    same dicts, bit for bit, as run_metrics run by run (a mean along the rows of a stacked
    array sums each row as it would alone).
    """
    Fs = np.stack([np.asarray(f, np.float64) for f in F])
    stats = {"train_loss": reference.mean_loss(Y, Fs, loss, axis=-1)}
    if not regression:
        stats["train_acc"] = reference.accuracy(Y, Fs, axis=-1)
    if FT is not None:
        FTs = np.stack([np.asarray(ft, np.float64) for ft in FT])
        stats["test_loss"] = reference.mean_loss(YT, FTs, loss, axis=-1)
        if not regression:
            stats["test_acc"] = reference.accuracy(YT, FTs, axis=-1)
    outs = []
    for r in range(len(Fs)):
        out = {"train_acc": np.nan, "train_loss": np.nan, "test_acc": np.nan,
               "test_loss": np.nan, "test_acc_se": np.nan, "P1": None, "P2": None,
               "f": F[r], "ft": None if FT is None else FT[r], "P": None}
        out.update({k: float(v[r]) for k, v in stats.items()})
        if regression:
            out["test_mse"] = 2.0 * out["test_loss"]
        if P is not None:
            Pr = np.asarray(P[r], dtype=np.float64)
            out["P"], out["P1"], out["P2"] = Pr, Pr[:, 0], Pr[:, 1]
        outs.append(out)
    return outs


def run_metrics(f, y, ft=None, yt=None, P=None, loss="logistic", regression=False) -> dict:
    """The evaluation dict of one run from host float64 outputs (every engine uses this).

    Parameters
    ----------
    f, y : (n,) arrays
        Training outputs and (noisy) labels.
    ft, yt : (n_test,) arrays, optional
        Test outputs and clean labels (NaN metrics without them).
    P : (m, k) array, optional
        Projections W [mu1, mu2, tracked directions...].
    loss : str
        The training loss, whose mean the losses report.
    regression : bool
        Real-valued targets (the square loss): the accuracies are NaN, and ``test_mse`` is the
        mean of (y - f)^2 over the test set.
    """
    return runs_metrics([f], np.asarray(y)[None], None if ft is None else [ft],
                        None if ft is None else np.asarray(yt)[None],
                        None if P is None else [P], loss, regression)[0]
