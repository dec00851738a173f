"""The gram method's linear regime (docs/design.md 2.4): incremental steps are the dense
recursion with other rounding; runs that leave the regime continue densely."""
import dataclasses

import numpy as np
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

import fastgrok as fg
from fastgrok import tunables
from fastgrok.engines import GramEngine, NumbaOps
from fastgrok.model import Model
from fastgrok.sources import ArraySource, GeneratedSource

#: The cost rules as shipped (the fixture below replaces them).
LIMITS = {name: getattr(tunables, name) for name in ("GRAM_LINEAR_MAX_CHANGES",
                                                     "GRAM_NEAR_MAX_CHANGES")}


@pytest.fixture(autouse=True)
def enter_at_once(monkeypatch):
    """Runs enter the regimes after their first (dense) step however much of the pattern it
    changed (the tests below that check the cost rules set their own limits)."""
    for name in LIMITS:
        monkeypatch.setattr(tunables, name, 2.0)


FAMILY = [Model(act, leak, loss) for act, leak in (("relu", None), ("leaky_relu", 0.1), ("leaky_relu", 0.6))
          for loss in ("logistic", "exponential", "hinge")]


def _pair(sources, lr, dtype, monkeypatch, model=None):
    """The same batch, to be stepped incrementally (A) and densely (B): the switch is read
    when an engine is built."""
    engines = []
    for flag in (True, False):
        monkeypatch.setattr(tunables, "GRAM_LINEAR_REGIME", flag)
        engines.append(GramEngine(sources, lr, dtype, ops=NumbaOps(), model=model))
    return engines


def _step(*engines):
    for eng in engines:
        eng.step()


@given(st.integers(1, 6), st.integers(2, 40), st.integers(1, 12), st.integers(0, 2**31 - 1),
       st.integers(1, 3), st.sampled_from(FAMILY))
def test_frozen_weights_incremental_equals_dense_in_float64(monkeypatch, n, p, m, seed, runs, model):
    """Tiny weights and step (|f| < 1e-17, so every g is exactly -l'(0) in float64): the two
    recursions agree at every step - accuracies exactly, Z and losses to 1e-12 relative - for
    every activation and loss of the family, exact refreshes included."""
    monkeypatch.setattr(tunables, "GRAM_LINEAR_REFRESH", 7)
    g = np.random.default_rng(seed)
    srcs = []
    for r in range(runs):
        X = g.standard_normal((n, p))
        y = np.where(g.random(n) < 0.5, 1.0, -1.0)
        a = np.where(g.random(m) < 0.5, 1.0, -1.0) / np.sqrt(m)
        srcs.append(ArraySource(X, y, m, X_test=X[::-1] + 0.1, y_test=-y[::-1],
                                W0=1e-21 * g.standard_normal((m, p)), a=a,
                                mu1=g.standard_normal(p), mu2=g.standard_normal(p)))
    A, B = _pair(srcs, 1e-21, "float64", monkeypatch, model)
    # C keeps its test outputs and projections up to date as it steps (evaluated every step).
    C = _pair(srcs, 1e-21, "float64", monkeypatch, model)[0]
    C.plan_evaluations(np.arange(31))
    compared = 0
    for t in range(30):
        A.sync()
        scale = np.abs(B.Z).max() + 1e-300
        near_kink = np.abs(B.Z) < 1e-9 * scale
        for ea, eb, ec in zip(A.evaluate(), B.evaluate(), C.evaluate()):
            assert ea["train_acc"] == eb["train_acc"] and ea["test_acc"] == eb["test_acc"]
            assert ea["train_loss"] == pytest.approx(eb["train_loss"], rel=1e-12)
            assert ec["test_acc"] == eb["test_acc"]
            assert ec["test_loss"] == pytest.approx(eb["test_loss"], rel=1e-12)
            for key in ("P1", "P2"):
                np.testing.assert_allclose(ec[key], eb[key], rtol=1e-12,
                                           atol=1e-12 * np.abs(eb[key]).max())
        np.testing.assert_allclose(A.Z[~near_kink], B.Z[~near_kink], rtol=1e-12, atol=1e-12 * scale)
        compared += 1
        if near_kink.any():
            break  # a pattern bit at rounding level: beyond it the two may part
        _step(A, B, C)
    assert C.counters() == A.counters()  # the same steps, incremental from the same step on
    assume(compared >= 5)  # the problem itself reached a kink early: discard, not pass
    stats = A.counters()
    # The regime was used for every step but each run's first (dense) one.
    assert stats["linear_run_steps"] == stats["run_steps"] - runs > 0


@pytest.mark.parametrize("model", [m for m in FAMILY if m.loss != "hinge"],
                         ids=lambda m: f"{m.activation}{m.leak or ''}-{m.loss}")
def test_a_run_that_leaves_the_regime_continues_densely_and_matches(monkeypatch, model):
    """A step size at which outputs grow: the run enters the regime, leaves it when g moves
    off -l'(0), and from then on matches the dense-only run to float64 rounding. (The hinge
    loss's weight stays exactly 1 until a margin reaches 1, far beyond this run.)"""
    cfg = fg.Config(n=20, p=300, m=16, n_test=10, runs=2, lr=1e-18, init_scale=1e-22,
                    dtype="float64", representation="full")
    srcs = [GeneratedSource(cfg, r) for r in range(2)]
    A, B = _pair(srcs, cfg.lr, "float64", monkeypatch, model)
    for _ in range(60):
        _step(A, B)
    stats = A.counters()
    assert 0 < stats["linear_run_steps"] < stats["run_steps"]  # entered, then left
    assert all(A.state.left)
    for ea, eb in zip(A.evaluate(), B.evaluate()):
        assert ea["train_acc"] == eb["train_acc"] and ea["test_acc"] == eb["test_acc"]
        assert ea["train_loss"] == pytest.approx(eb["train_loss"], rel=1e-9)
    np.testing.assert_allclose(A.Ct, B.Ct, rtol=1e-9, atol=1e-9 * np.abs(B.Ct).max())


def test_float32_incremental_rounding_stays_below_the_dense_steps(monkeypatch):
    """float32 paper regime: against a float64 dense run of the same recursion, the
    incremental trajectory's error in Z never exceeds the dense float32 trajectory's."""
    monkeypatch.setattr(tunables, "GRAM_LINEAR_REFRESH", 50)
    from fastgrok.sources import ReducedSource

    cfg = fg.preset("paper-fig1-right", runs=2, m=100, steps=400)
    srcs = [ReducedSource(cfg, r) for r in range(2)]
    A, B = _pair(srcs, cfg.lr, "float32", monkeypatch)
    # The truth: the same recursion in float64 on exactly the float32 numbers A and B start from.
    monkeypatch.setattr(tunables, "GRAM_LINEAR_REGIME", False)
    truth = GramEngine(srcs, cfg.lr, "float64", ops=NumbaOps())
    for name in ("K", "Kt", "Z0", "Zt0", "XM", "W0M"):
        getattr(truth, name)[...] = getattr(B, name)
    truth.Z[...] = truth.Z0
    for t in range(400):
        _step(A, B, truth)
        if t % 50 == 49:
            A.sync()
            err_incr = np.linalg.norm(A.Z - truth.Z)
            err_dense = np.linalg.norm(B.Z - truth.Z)
            assert err_incr <= err_dense, (t, err_incr, err_dense)
    assert A.counters()["linear_run_steps"] == 800 - 2  # all but the first step of each run


def test_run_reports_the_regime_and_matches_dense_medians():
    cfg = fg.preset("paper-fig1-right", runs=6, m=60, steps=300)
    old = tunables.GRAM_LINEAR_REGIME
    try:
        tunables.GRAM_LINEAR_REGIME = True
        fast = fg.run(cfg, progress=False)
        tunables.GRAM_LINEAR_REGIME = False
        dense = fg.run(cfg, progress=False)
    finally:
        tunables.GRAM_LINEAR_REGIME = old
    # Every step but each run's first (dense) one.
    assert fast.info["linear_fraction"] == round(1 - 1 / 300, 6)
    assert fast.info["pattern_changes_per_step"] > 0
    assert "linear_fraction" not in dense.info or dense.info["linear_fraction"] == 0
    diff = (fast.history[["train_acc", "test_acc"]] != dense.history[["train_acc", "test_acc"]])
    assert diff.to_numpy().mean() < 0.02  # accuracies agree but where a pattern bit sits on its kink


def test_many_steps_in_one_call_equal_one_step_at_a_time(monkeypatch):
    """The fused kernel takes k steps row by row; a run that leaves the regime inside a call
    is rolled back and retaken: either way the numbers are those of single steps, bit for
    bit (refreshes included). So are those of segments evaluated at every step with tracked
    test outputs, whose evaluations match to float64 rounding; the evaluations the kernel
    records as it steps are those of the tracked rows read after each step, bit for bit."""
    monkeypatch.setattr(tunables, "GRAM_LINEAR_REFRESH", 17)
    monkeypatch.setattr(tunables, "GRAM_LINEAR_REGIME", True)
    cfg = fg.Config(n=20, p=300, m=16, n_test=10, runs=3, lr=1e-18, init_scale=1e-22,
                    dtype="float64", representation="full")
    srcs = [GeneratedSource(cfg, r) for r in range(3)]
    one, many, seg, ev = (GramEngine(srcs, cfg.lr, "float64", ops=NumbaOps()) for _ in range(4))
    # seg: segments evaluated at every step, with tracked test outputs and projections; ev:
    # the same, a step and an evaluation at a time.
    seg.plan_evaluations(np.arange(61))
    ev.plan_evaluations(np.arange(61))
    evals = {0: seg.evaluate()}  # the runs leave the regime inside the piece of 20 steps
    evals.update(zip([1, 2, 3, 4, 5, 25], seg.segment([(1, True)] * 5 + [(20, True)])))
    evals.update(zip(range(26, 56), seg.segment([(1, True)] * 30 + [(5, False)])))
    for t in range(60):
        if t in evals:
            for eo, es, ee in zip(one.evaluate(), evals[t], ev.evaluate()):
                assert eo["train_acc"] == es["train_acc"] and eo["test_acc"] == es["test_acc"]
                assert eo["test_loss"] == pytest.approx(es["test_loss"], rel=1e-12)
                np.testing.assert_allclose(es["P1"], eo["P1"], rtol=1e-12,
                                           atol=1e-12 * np.abs(eo["P1"]).max())
                assert ee["test_loss"] == es["test_loss"] and ee["train_loss"] == es["train_loss"]
                np.testing.assert_array_equal(ee["P1"], es["P1"])
        one.step()
        ev.step()
    many.advance(25)
    many.advance(35)
    assert 0 < one.counters()["linear_run_steps"] < one.counters()["run_steps"]  # entered, left
    assert one.counters() == many.counters() == seg.counters()
    for eng in (one, many, seg):
        eng.sync()
    for eng in (many, seg):
        np.testing.assert_array_equal(one.Ct, eng.Ct)
        np.testing.assert_array_equal(one.Z, eng.Z)


def test_a_dense_start_of_the_schedule_is_tracked_then_evaluated_from_c(monkeypatch):
    """A schedule whose first evaluations are a few steps apart, then far apart (the right
    panel's): the runs keep their tracked rows through its dense start, drop them at its last
    evaluation there, and take the long gaps in blocks, evaluated from C. Against evaluations
    from C throughout: the same pattern, C and Z bit for bit, the same accuracies and training
    losses, the test losses and projections to float32 rounding (the tracked rows hold them in
    float64)."""
    from fastgrok.sources import ReducedSource

    monkeypatch.setattr(tunables, "GRAM_LINEAR_REGIME", True)
    cfg = fg.preset("paper-fig1-right", runs=2, m=40, steps=200)
    srcs = [ReducedSource(cfg, r) for r in range(2)]
    schedule = np.r_[0:10, 12, 15, 20, 60, 100, 200]  # gaps under 24 up to step 20
    engines = []
    for prefix in (0, 24):
        monkeypatch.setattr(tunables, "GRAM_LINEAR_TRACK_PREFIX", prefix)
        eng = GramEngine(srcs, cfg.lr, "float32", ops=NumbaOps())
        eng.plan_evaluations(schedule)
        engines.append(eng)
    plain, tracked = engines
    assert plain.state.rows is None and tracked.state.track_until == 20
    pieces = [(int(k), True) for k in np.diff(schedule)]
    got = [[eng.evaluate()] + eng.segment(pieces[:11]) for eng in engines]  # to step 15
    assert all(st_.KtT.shape[1] == 0 for st_ in plain.state.runs)
    assert all(st_.KtT.shape[1] > 0 for st_ in tracked.state.runs)
    for evs, eng in zip(got, engines, strict=True):
        evs += eng.segment(pieces[11:])
    assert all(st_.KtT.shape[1] == 0 for st_ in tracked.state.runs)  # dropped at step 20
    for evs_plain, evs_tracked in zip(*got, strict=True):
        for a, b in zip(evs_plain, evs_tracked, strict=True):
            assert a["train_acc"] == b["train_acc"] and a["test_acc"] == b["test_acc"]
            assert a["train_loss"] == b["train_loss"]
            assert a["test_loss"] == pytest.approx(b["test_loss"], rel=1e-6)
            for key in ("P1", "P2"):
                np.testing.assert_allclose(b[key], a[key], rtol=1e-5,
                                           atol=1e-5 * np.abs(a[key]).max())
    assert plain.counters() == tracked.counters()
    for eng in engines:
        eng.sync()
    np.testing.assert_array_equal(plain.Ct, tracked.Ct)
    np.testing.assert_array_equal(plain.Z, tracked.Z)


@pytest.mark.parametrize("schedule", [np.r_[0:30, 40, 50, 60, 90, 130, 200, 400],
                                      np.arange(401)])
def test_a_run_with_tracked_rows_stops_at_its_first_interpolation(monkeypatch, schedule):
    """Stepping until each run interpolates (the driver's stop rule), runs that keep tracked
    rows (through the schedule's dense start, or for good) stop at the step at which they
    would without them, with the same state."""
    from fastgrok.sources import ReducedSource

    monkeypatch.setattr(tunables, "GRAM_LINEAR_REGIME", True)
    cfg = fg.preset("paper-fig1-right", runs=3, m=60, steps=400)
    srcs = [ReducedSource(cfg, r) for r in range(3)]
    plain, tracked = (GramEngine(srcs, cfg.lr, "float32", ops=NumbaOps()) for _ in range(2))
    tracked.plan_evaluations(schedule)
    for eng in (plain, tracked):
        eng.advance(20)
    assert all(st_.KtT.shape[1] > 0 for st_ in tracked.state.runs)
    got = [eng.advance_until_interpolation(80) for eng in (plain, tracked)]
    assert got[0] == got[1] and 0 < max(got[0][1]) < 80  # a run interpolated on the way
    for eng in (plain, tracked):
        eng.sync()
    np.testing.assert_array_equal(plain.Ct, tracked.Ct)


def test_evaluations_at_refresh_points_do_not_depend_on_how_the_steps_are_split(monkeypatch):
    """Evaluated every step, a run in the regime has its evaluations recorded by the kernel,
    and the exact refresh runs before the step after a refresh point: every evaluation,
    those at refresh points included, is the same bits in segments (split at a step that is
    not a refresh point) as a step and an evaluation at a time."""
    monkeypatch.setattr(tunables, "GRAM_LINEAR_REFRESH", 7)
    cfg = fg.Config(n=20, p=300, m=16, n_test=10, runs=2, lr=1e-21, init_scale=1e-22,
                    dtype="float64", representation="full")  # frozen weights: no run leaves
    srcs = [GeneratedSource(cfg, r) for r in range(2)]
    seg, ev = (GramEngine(srcs, cfg.lr, "float64", ops=NumbaOps()) for _ in range(2))
    for eng in (seg, ev):
        eng.plan_evaluations(np.arange(31))
    got = seg.segment([(1, True)] * 13) + seg.segment([(1, True)] * 17)
    for evs in got:
        ev.step()
        for a, b in zip(evs, ev.evaluate()):
            assert a["test_loss"] == b["test_loss"] and a["train_loss"] == b["train_loss"]
            np.testing.assert_array_equal(a["P1"], b["P1"])
            np.testing.assert_array_equal(a["P2"], b["P2"])
    # 29 steps in the regime (the first is dense): refreshed after 7, 14, 21 and 28 of them.
    assert all(st_ is not None and st_.refreshed == 28 for st_ in seg.state.runs)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_state_written_for_evaluation_is_the_incremental_state(monkeypatch, dtype):
    """sync writes Z and C^T with a kernel: the same bits as the NumPy expressions
    C^T = C0^T + (c a) (leak steps + (1 - leak) S^T) and Z = ZT^T."""
    monkeypatch.setattr(tunables, "GRAM_LINEAR_REGIME", True)
    cfg = fg.preset("paper-fig1-right", runs=2, m=30, steps=40, activation="leaky_relu", leak=0.3)
    if dtype == "float64":  # frozen in float64 only while |f| < 1e-17
        cfg = cfg.replace(lr=1e-24, init_scale=1e-24)
    from fastgrok.model import Model
    from fastgrok.sources import ReducedSource

    eng = GramEngine([ReducedSource(cfg, r) for r in range(2)], cfg.lr, dtype, ops=NumbaOps(),
                     model=Model.of(cfg))
    eng.advance(40)
    eng.sync()
    for r in range(2):
        st = eng.state.runs[r]
        assert st is not None and st.steps == 39  # the first step is dense
        leak = eng.state.leak
        active = st.SX + (st.ZT > 0) * st.steps  # steps each entry has been active
        slopes = leak * st.steps + (1.0 - leak) * active.T
        ct = st.Ct0T.T + (st.c[:, None] * st.a[None, :]) * slopes
        np.testing.assert_array_equal(eng.Ct[r], ct.astype(dtype))
        np.testing.assert_array_equal(eng.Z[r], st.ZT.T.astype(dtype))


def test_runs_enter_when_dense_steps_change_little_of_the_pattern(monkeypatch):
    """The left panel's first steps change much of the pattern (dense steps are cheaper
    then): a run enters after the first dense step that changed at most half of
    GRAM_LINEAR_MAX_CHANGES of its entries, not before."""
    monkeypatch.setattr(tunables, "GRAM_LINEAR_MAX_CHANGES", LIMITS["GRAM_LINEAR_MAX_CHANGES"])
    from fastgrok.sources import ReducedSource

    cfg = fg.preset("paper-fig1-left", runs=2, m=40)
    eng = GramEngine([ReducedSource(cfg, r) for r in range(2)], cfg.lr, "float32", ops=NumbaOps())
    n, m, st = cfg.n, cfg.m, eng.state
    entered = [None, None]
    for t in range(12):
        flips = list(st.flips)
        eng.step()
        for r in range(2):
            if entered[r] is None and st.runs[r] is not None:
                entered[r] = t
                assert flips[r] is not None  # the step before changed little:
                assert flips[r] <= n * m * LIMITS["GRAM_LINEAR_MAX_CHANGES"] / 2
            elif entered[r] is None and t > 0:
                assert st.flips[r] is not None  # every dense step of a candidate is counted
    assert all(e is not None and e >= 2 for e in entered), entered  # 47%, 24%, ...: dense first
    assert eng.counters()["linear_run_steps"] == sum(12 - e for e in entered)


def test_a_run_whose_steps_change_too_much_goes_dense_and_comes_back(monkeypatch):
    """Incremental steps that change more than GRAM_LINEAR_MAX_CHANGES of the pattern send
    the run to dense steps (not for good); it re-enters when a dense step changes less than
    half of it; and the trajectory is still the dense one, to float64 rounding."""
    cfg = fg.Config(n=20, p=300, m=16, n_test=10, runs=2, lr=1e-21, init_scale=1e-22,
                    dtype="float64", representation="full")
    srcs = [GeneratedSource(cfg, r) for r in range(2)]
    A, B = _pair(srcs, cfg.lr, "float64", monkeypatch)
    for _ in range(5):
        _step(A, B)
    assert all(run is not None for run in A.state.runs)
    monkeypatch.setattr(tunables, "GRAM_LINEAR_MAX_CHANGES", 0.0)  # any change is too many
    for _ in range(20):
        _step(A, B)
    out = [r for r in range(2) if A.state.runs[r] is None]
    assert out and not any(A.state.left)  # some run changed its pattern: dense, not for good
    monkeypatch.setattr(tunables, "GRAM_LINEAR_MAX_CHANGES", 2.0)
    for _ in range(5):
        _step(A, B)
    assert all(run is not None for run in A.state.runs)  # back in
    A.sync()
    for ea, eb in zip(A.evaluate(), B.evaluate()):
        assert ea["train_acc"] == eb["train_acc"] and ea["test_acc"] == eb["test_acc"]
        assert ea["train_loss"] == pytest.approx(eb["train_loss"], rel=1e-12)
    np.testing.assert_allclose(A.Ct, B.Ct, rtol=1e-9, atol=1e-9 * np.abs(B.Ct).max())
    np.testing.assert_allclose(A.Z, B.Z, rtol=1e-9, atol=1e-9 * np.abs(B.Z).max())


def test_the_memory_plan_counts_the_regime_state(monkeypatch):
    """Batches are sized from GramEngine.state_bytes: on the CPU with the regime on it covers
    every array a run holds in the linear regime (with tracked evaluation rows) or in the
    near-linear one (each about twice the rest)."""
    monkeypatch.setattr(tunables, "GRAM_LINEAR_REGIME", True)
    from fastgrok.engines import get_engine
    from fastgrok.sources import ReducedSource

    def held(eng, states):
        total = sum(getattr(eng, k).nbytes for k in ("K", "Kt", "Z0", "Zt0", "XM", "W0M", "Z", "Ct"))
        for st_ in states:
            arrays = [getattr(st_, f.name) for f in dataclasses.fields(st_)]
            arrays += list(getattr(st_, "exact", None) or ())
            # Each buffer once (a field may be a view of another), and not the engine's own
            # arrays (a run's labels and second layer).
            seen = [eng.y, eng.a]
            for v in arrays:
                if isinstance(v, np.ndarray) and not any(np.shares_memory(v, w) for w in seen):
                    seen.append(v)
                    total += v.nbytes
        return total

    cfg = fg.preset("paper-fig1-right", runs=2, m=50)
    Eng = get_engine("gram", "numba")
    eng = Eng([ReducedSource(cfg, r) for r in range(2)], cfg.lr, "float32")
    eng.plan_evaluations(np.arange(4))  # evaluated every step: tracked rows
    eng.advance(3)
    assert all(st_ is not None and st_.KtT.size for st_ in eng.state.runs)
    linear = held(eng, eng.state.runs)
    left = fg.preset("paper-fig1-left", runs=2, m=50, lr=1e-10)
    eng = Eng([ReducedSource(left, r) for r in range(2)], left.lr, "float32")
    for _ in range(100):
        if all(ns is not None for ns in eng.state.near):
            break
        eng.step()
    assert all(ns is not None for ns in eng.state.near)
    eng.evaluate()  # keeps the exact state of this step
    near = held(eng, eng.state.near)
    planned = 2 * Eng.engine.state_bytes(cfg.n, cfg.m, cfg.n_test, "float32", Eng.ops)
    assert max(linear, near) <= planned < 1.1 * max(linear, near)
    monkeypatch.setattr(tunables, "GRAM_LINEAR_REGIME", False)
    assert Eng.engine.state_bytes(cfg.n, cfg.m, cfg.n_test, "float32", Eng.ops) < planned / 2


NEAR_FAMILY = [m for m in FAMILY if m.loss != "hinge"]  # the hinge's weight never moves here


def _reference_steps(K, Z, y, a, lr, model, steps):
    """The float64 recursion with the working precision's (float32) loss weights, from Z:
    the near-linear regime's trajectory up to float64 rounding. Yields (Z, g) per step."""
    from fastgrok import reference

    n = Z.shape[0]
    for _ in range(steps):
        f = reference.forward_from_preactivations(Z, a, model.slope)
        g = reference.loss_weights(y, f, model.loss).astype(np.float32).astype(np.float64)
        slope = model.slope + (1.0 - model.slope) * (Z > 0)
        Z = Z + K @ ((lr / n) * (g * y)[:, None] * a[None, :] * slope)
        yield Z, g


@given(st.sampled_from(NEAR_FAMILY), st.integers(0, 1000), st.sampled_from([1e-8, 1e-7]),
       st.sampled_from([1.0, 1e4]))
def test_near_linear_steps_follow_the_float64_recursion(monkeypatch, model, seed, lr, scale):
    """Once the weights move, the near-linear regime follows the recursion with float32
    weights to float64 rounding: Z to 1e-9 relative away from kinks, and every weight equal,
    also with the bound widened 10^4-fold (most entries and outputs then decided exactly),
    rebases and exact refreshes included."""
    from fastgrok.sources import ReducedSource

    monkeypatch.setattr(tunables, "GRAM_LINEAR_REFRESH", 17)  # Ze grows to 1e-6 of Z between
    monkeypatch.setattr(tunables, "GRAM_NEAR_BOUND_SCALE", scale)
    cfg = fg.preset("paper-fig1-left", n=30, m=12, n_test=5, runs=1, lr=lr, seed=seed)
    eng = GramEngine([ReducedSource(cfg, 0)], cfg.lr, "float32", ops=NumbaOps(), model=model)
    t = 0
    while eng.state.near[0] is None and t < 400:
        eng.step()
        t += 1
    assume(eng.state.near[0] is not None)
    ZT, _ = eng.state._near_exact(eng.state.near[0])
    K = np.asarray(eng.K[0], np.float64)
    y, a = eng.y[0], eng.a[0]
    steps = 0
    for Zref, g in _reference_steps(K, ZT.T.copy(), y, a, cfg.lr, model, 40):
        np.testing.assert_array_equal(eng.state.near[0].g, g)  # the weights of this step
        eng.step()
        assert eng.state.near[0] is not None
        Z = eng.state._near_exact(eng.state.near[0])[0].T
        scale_z = np.abs(Zref).max()
        kink = np.abs(Zref) < 1e-7 * scale_z
        np.testing.assert_allclose(Z[~kink], Zref[~kink], rtol=1e-9, atol=1e-12 * scale_z)
        steps += 1
        if kink.any():
            break  # a pattern bit at rounding level: beyond it the two may part
    assume(steps >= 3)


def test_near_linear_matches_dense_float32_runs(monkeypatch):
    """The left panel's settings past the frozen weights (m = 100, 3000 steps): the same
    train and test accuracies at every evaluated step as dense float32 steps."""
    for name, value in LIMITS.items():
        monkeypatch.setattr(tunables, name, value)
    cfg = fg.preset("paper-fig1-left", m=100, runs=3, steps=3000, snapshot_steps=())
    res = {}
    for flag in (True, False):
        monkeypatch.setattr(tunables, "GRAM_NEAR_LINEAR", flag)
        res[flag] = fg.run(cfg, progress=False)
    assert res[True].info["near_linear_fraction"] > 0.5
    assert res[False].info["near_linear_fraction"] == 0
    cols = ["train_acc", "test_acc"]
    assert (res[True].history[cols] == res[False].history[cols]).all().all()
    np.testing.assert_allclose(res[True].history["train_loss"], res[False].history["train_loss"],
                               rtol=1e-6)


def _regime_problem(g, n, m, leak, dtype):
    """A row-major linear-regime state (K, ZT, DT, SX, c, a) with entries near their kinks.

    K = X X^T of a random X; Z^T (m, n) small and of both signs; D^T = (K V)^T for the pattern
    of Z with V = c a (leak + (1 - leak) M): the state :class:`LinearState` holds at entry.
    """
    X = g.standard_normal((n, 3 * n)).astype(dtype)
    K = np.ascontiguousarray(X @ X.T)
    c = 1e-3 * np.where(g.random(n) < 0.5, 1.0, -1.0) / n
    a = np.where(g.random(m) < 0.5, 1.0, -1.0) / np.sqrt(m)
    ZT = g.standard_normal((m, n)) * 0.05
    V = c[:, None] * a[None, :] * (leak + (1.0 - leak) * (ZT.T > 0))
    DT = np.ascontiguousarray((K.astype(np.float64) @ V).T)
    return K, ZT, DT, np.zeros((m, n), np.int32), c, a


def _steps_and_blocks(K, ZT, DT, SX, c, a, leak, k, T, widen):
    """k steps from the state by linear_steps and by linear_blocks (blocks of at most T, no
    hints): (changes, its (ZT, DT, SX), its outputs F, changes in blocks, their (ZT, DT, SX),
    their outputs f, the block counts)."""
    from fastgrok.kernels import gram_linear as gl

    m, n = ZT.shape
    one = [x.copy() for x in (ZT, DT, SX)]
    F = np.empty((1, n))
    rows = np.full(k, -1)
    rows[-1] = 0
    empty = np.empty((n, 0), K.dtype), np.zeros((m, 0)), np.zeros((m, 0))
    changes = gl.linear_steps(K, *one, c, a, F, rows, leak, 5, k, *empty, np.full(k, -1),
                              np.empty((0, 0)), np.empty((0, m, 0)))
    blocks = [x.copy() for x in (ZT, DT, SX)]
    f, counts = np.empty(n), np.zeros(3, np.int64)
    K64 = K.astype(np.float64)
    kmax = np.abs(K64 - np.diag(np.diag(K64))).max(axis=1)
    hints = np.full(m, -1.0), np.zeros((m, n), np.uint8), np.zeros((m, n), np.float32)
    got = gl.linear_blocks(K, *blocks, c, a, f, leak, 5, k, T, kmax, widen, *hints, counts)
    return changes, one, F, got, blocks, f, counts


@given(st.sampled_from([1, 7, 63, 64, 65, 127, 128, 130, 200]), st.integers(1, 5),
       st.integers(1, 12), st.sampled_from([0.0, 0.1]), st.integers(0, 2**31 - 1))
@example(1, 1, 1, 0.0, 262145)  # D cancels to 0 exactly in NumPy, to 3e-19 in the kernel
def test_linear_steps_finds_every_sign_change(n, m, k, leak, seed):
    """linear_steps against the recursion in NumPy, one step at a time, for rows on and off
    the kernel's words of 64 entries: the same number of pattern changes, counts S and
    pattern; Z and D to float64 rounding (the kernel adds a step's rows of K four at a time)."""
    g = np.random.default_rng(seed)
    K, ZT, DT, SX, c, a = _regime_problem(g, n, m, leak, "float64")
    Z, D, S, total = ZT.copy(), DT.copy(), SX.copy(), 0
    for s in range(k):
        old = Z > 0
        Z = Z + D
        flip = (Z > 0) != old
        sign = np.where(Z > 0, 1.0, -1.0)  # +1: the entry turned on
        S -= (flip * sign * (5 + s + 1)).astype(np.int32)  # S = SX + M t after t steps
        D = D + np.where(flip, sign * (1.0 - leak) * c[None, :] * a[:, None], 0.0) @ K
        total += int(flip.sum())
    changes, one = _steps_and_blocks(K, ZT, DT, SX, c, a, leak, k, 1, 0.0)[:2]
    assert changes == total
    np.testing.assert_array_equal(one[2], S)
    np.testing.assert_array_equal(one[0] > 0, Z > 0)
    # (rounding relative to the sums' terms: a sum can cancel to 0, where the kernel's fused
    # multiply-add leaves the product's rounding error)
    np.testing.assert_allclose(one[0], Z, rtol=0, atol=1e-12 * _scale(Z, ZT))
    np.testing.assert_allclose(one[1], D, rtol=0, atol=1e-12 * _scale(D, DT))


def _scale(*arrays):
    """The largest magnitude in any of ``arrays``."""
    return max(float(np.abs(x).max()) for x in arrays)


@given(st.integers(2, 90), st.integers(1, 6), st.integers(2, 70), st.sampled_from([0.0, 0.1]),
       st.sampled_from(["float32", "float64"]), st.integers(1, 40),
       st.sampled_from([0.0, 1.0, 8.0, 1e9]), st.integers(0, 2**31 - 1))
def test_blocks_follow_the_step_by_step_recursion(n, m, k, leak, dtype, T, widen, seed):
    """linear_blocks against linear_steps from the same state: the same changes, counts S and
    pattern, Z, D and the outputs to float64 rounding - whatever the block length, with near
    sets that must be widened (``widen`` 0: every block that a
    change reaches beyond the first guess is stepped again) and with near sets over the cap
    (``widen`` 1e9 and n > 64: those blocks step one step at a time)."""
    from fastgrok.kernels import gram_linear as gl

    g = np.random.default_rng(seed)
    K, ZT, DT, SX, c, a = _regime_problem(g, n, m, leak, dtype)
    changes, one, F, got, blocks, f, counts = _steps_and_blocks(K, ZT, DT, SX, c, a, leak, k,
                                                                T, widen)
    assert got == changes
    np.testing.assert_array_equal(blocks[2], one[2])  # the counts S: the pattern's history
    np.testing.assert_array_equal(blocks[0] > 0, one[0] > 0)
    for x, y, start in zip(blocks[:2], one[:2], (ZT, DT)):
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-12 * _scale(y, start))
    np.testing.assert_allclose(f, F[0], rtol=0, atol=1e-12 * np.abs(F[0]).max())
    assert counts[0] >= -(-k // T)  # at least one block per T steps of each row
    if widen == 1e9 and n > gl.NEAR_CAP:
        assert counts[2] == counts[0]  # every block over the cap: stepped one step at a time


def test_blocks_count_no_change_for_a_row_with_an_empty_near_set():
    """A row whose entries are all far from their kinks has an empty near set; stepping it
    must not step what earlier rows left in the scratch (a padded set of stale entries)."""
    n, m, k = 40, 3, 64
    g = np.random.default_rng(3)
    K, ZT, DT, SX, c, a = _regime_problem(g, n, m, 0.0, "float32")
    ZT[1] = np.where(ZT[1] > 0, 1.0, -1.0)  # far from the kink: no change within k steps
    V = c[:, None] * a[None, :] * (ZT.T > 0)
    DT = np.ascontiguousarray((K.astype(np.float64) @ V).T)
    changes, one, _, got, blocks, _, _ = _steps_and_blocks(K, ZT, DT, SX, c, a, 0.0, k, k, 8.0)
    assert changes > 0 and np.array_equal(one[0][1] > 0, ZT[1] > 0)
    assert got == changes
    np.testing.assert_array_equal(blocks[2], one[2])


def test_blocks_change_no_evaluation_of_the_right_panel(monkeypatch):
    """The right panel's runs (the linear regime, calls that read only their last step) with
    blocks and step by step: the same accuracies, projections and pattern changes, losses to
    1e-12."""
    cfg = fg.preset("paper-fig1-right", runs=2, m=60, n=40, n_test=40, p=2000, steps=600,
                    snapshot_steps=(0, 300, 600))
    from fastgrok.kernels import gram_linear as gl

    calls, real = [], gl.linear_blocks
    monkeypatch.setattr(gl, "linear_blocks", lambda *args: calls.append(1) or real(*args))
    out = {}
    for block in (1, 16):
        monkeypatch.setattr(tunables, "GRAM_LINEAR_BLOCK", block)
        monkeypatch.setattr(tunables, "GRAM_LINEAR_BLOCK_MIN", 2)
        monkeypatch.setattr(tunables, "GRAM_LINEAR_TRACK_PREFIX", 0)  # every call may take blocks
        monkeypatch.setattr(tunables, "STEPS_PER_CALL", 64)
        out[block] = fg.run(cfg, progress=False)
    a, b = out[1].history, out[16].history
    for col in ("train_acc", "test_acc"):
        np.testing.assert_array_equal(a[col].to_numpy(), b[col].to_numpy())
    np.testing.assert_allclose(b["train_loss"], a["train_loss"], rtol=1e-12)
    np.testing.assert_allclose(b["test_loss"], a["test_loss"], rtol=1e-12)
    for key in ("P1", "P2"):
        np.testing.assert_array_equal(out[16].projections[key], out[1].projections[key])
    assert out[16].info["pattern_changes_per_step"] == out[1].info["pattern_changes_per_step"]
    assert out[16].info["linear_fraction"] > 0.99
    assert calls  # the blocks were taken (with block 16 only: 1 steps one step at a time)


@given(st.integers(1, 40), st.integers(1, 30), st.sampled_from([0.0, 0.1]),
       st.integers(0, 2**31 - 1))
def test_coefficients_at_entry_are_the_numpy_expression_bit_for_bit(n, m, leak, seed):
    """The regime's one-pass coefficients V^T against the NumPy expression V the regime formed
    before (c a (leak + (1 - leak) 1[Z > 0]), (n, m)), transposed: the same bits."""
    from fastgrok.kernels import gram_linear as gl

    g = np.random.default_rng(seed)
    ZT = g.standard_normal((m, n)) * np.where(g.random((m, n)) < 0.1, 0.0, 1.0)  # zeros too
    c, a = g.standard_normal(n) * 1e-18, g.standard_normal(m) / 7
    VT = np.empty((m, n))
    gl.coefficients_t(ZT, c, a, leak, VT)
    V = c[:, None] * a[None, :] * (leak + (1.0 - leak) * (ZT.T > 0))
    np.testing.assert_array_equal(VT, V.T)


def test_calls_in_the_regime_end_at_its_exact_refreshes(monkeypatch):
    """Every run in the linear regime: the engine's call ends where the runs' next exact
    refresh is due (so no refresh cuts a call's blocks), at most GRAM_LINEAR_STEPS_PER_CALL."""
    monkeypatch.setattr(tunables, "GRAM_LINEAR_REFRESH", 50)
    monkeypatch.setattr(tunables, "GRAM_LINEAR_STEPS_PER_CALL", 64)
    cfg = fg.preset("paper-fig1-right", runs=2, m=30, n=20, n_test=10, p=500, steps=200)
    from fastgrok.sources import ReducedSource

    eng = GramEngine([ReducedSource(cfg, r) for r in range(2)], cfg.lr, "float32",
                     ops=NumbaOps())
    eng.advance(2)  # the first step dense; the runs enter before the second
    assert eng.state.all_linear() and [st.steps for st in eng.state.runs] == [1, 1]
    seen = []
    for _ in range(4):
        k = eng.steps_per_call()
        seen.append(k)
        eng.advance(k)
        assert all(st.steps % 50 == 0 for st in eng.state.runs)
    assert seen == [49, 50, 50, 50]
    monkeypatch.setattr(tunables, "GRAM_LINEAR_STEPS_PER_CALL", 20)
    assert eng.steps_per_call() == 20
