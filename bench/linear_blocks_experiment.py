"""Experiment (left out): the linear regime in blocks of T steps, only near-kink entries stepped.

    python bench/linear_blocks_experiment.py M T0 T CAP_FRACTION K

Compares kernels/gram_linear.py: linear_blocks (this commit only) with linear_steps on one
right-panel run from step T0: time per step, the same signs and counts, the same outputs,
the same bits however the steps are split into calls.
"""
import time, numpy as np, fastgrok as fg, sys
from fastgrok.engines import GramEngine, NumbaOps
from fastgrok.sources import ReducedSource
from fastgrok.kernels.threads import threads
from fastgrok.kernels import gram_linear as gl
m = int(sys.argv[1]); T0 = int(sys.argv[2]); T = int(sys.argv[3]); capfrac = float(sys.argv[4]); k = int(sys.argv[5])
cfg = fg.preset("paper-fig1-right", runs=1, m=m)
eng = GramEngine([ReducedSource(cfg, 0)], cfg.lr, "float32", ops=NumbaOps())
with threads(1):
    eng.advance(T0)
st = eng.state.runs[0]
K = eng.K[0]; a = eng.a[0]; n = st.ZT.shape[1]
t0 = st.steps
# align the start to a block boundary
KtT = np.zeros((n, 0), K.dtype); E0 = np.zeros((m, 0))
def old(kk):
    ZT, DT, SX = st.ZT.copy(), st.DT.copy(), st.SX.copy()
    F = np.empty((1, n)); rows = np.full(kk, -1); rows[-1] = 0
    t = time.perf_counter()
    ch = gl.linear_steps(K, ZT, DT, SX, st.c, a, F, rows, 0.0, t0, kk, KtT, E0.copy(), E0.copy(), np.full(kk, -1), np.empty((0, 0)), np.empty((0, m, 0)))
    return time.perf_counter() - t, ZT, DT, SX, F[0], ch
def new(kk, splits=None):
    ZT, DT, SX = st.ZT.copy(), st.DT.copy(), st.SX.copy()
    cap = max(1, int(capfrac * n))
    NIDX = np.zeros((m, cap), np.int32); NCNT = np.full(m, -2, np.int32); VA = np.zeros((m, cap)); QA = np.zeros((m, cap)); rare = np.zeros(1, np.int64)
    splits = splits or [kk]
    tt, ch, done = 0.0, 0, 0
    for part in splits:
        F = np.empty((1, n)); rows = np.full(part, -1); rows[-1] = 0
        t = time.perf_counter()
        ch += gl.linear_blocks(K, ZT, DT, SX, st.c, a, F, rows, 0.0, t0 + done, part, T, NIDX, NCNT, VA, QA, rare)
        tt += time.perf_counter() - t
        done += part
    return tt, ZT, DT, SX, F[0], ch, rare[0], NCNT
old(2); new(2)
to, Zo, Do, So, Fo, cho = old(k)
tn, Zn, Dn, Sn, Fn, chn, rare, NCNT = new(k)
print(f"t0={t0} k={k} T={T}: old {to*1e3/k:.3f} ms/step, {cho/k:.0f} ch/step; blocks {tn*1e3/k:.3f} ms/step {chn/k:.0f} ch/step; rare {rare}; full-stepped rows at end {np.sum(NCNT==-1)} open {np.sum(NCNT>=0)}")
print("sign equal:", np.array_equal(Zo > 0, Zn > 0), "SX equal:", np.array_equal(So, Sn), "max rel Z diff", np.abs(Zo - Zn).max() / np.abs(Zo).max(), "F rel", np.abs(Fo - Fn).max() / np.abs(Fo).max())
_, Z2, D2, S2, F2, ch2, _, _ = new(k, [7, 13, k - 20])
print("split-independent:", np.array_equal(Z2, Zn), np.array_equal(D2, Dn), np.array_equal(S2, Sn), np.array_equal(F2, Fn))
L = NCNT[NCNT >= 0]
print("near set sizes: mean", L.mean(), "median", np.median(L), "max", L.max(), "p90", np.percentile(L, 90))
