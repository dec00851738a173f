"""Numba kernels of the gram method's linear regime (docs/design.md 2.4).

While every loss weight g_i is the same number at every step in the working precision (tiny
outputs: g = -l'(0), 1/2 for the logistic loss and 1 for the exponential and hinge losses), the
coefficients are V = c * phi'(Z) with a fixed c_ij = (lr/n) g y_i a_j, and phi'(Z) =
leak + (1 - leak) M with M the activation pattern 1[Z > 0]. Keeping D = K V, a step is

    C^T += V(t);  Z(t+1) = Z(t) + D(t);  M(t+1) = 1[Z(t+1) > 0];
    D(t+1) = D(t) + (1 - leak) K (c * dM)

and only the entries whose pattern changes cost O(n) each, instead of O(n^2 m) for the product.
The state is held transposed, (m, n), so that the update of D for a changed entry (i, j) is
the contiguous row D^T[j, :] += K[i, :] c_i a_j dM (K is symmetric). Everything is float64:
the increments are float64 sums in a fixed order, so rounding only accumulates
at float64 level (and the engine refreshes D and Z exactly every so many steps).
"""
from __future__ import annotations

import numpy as np
from numba import carray, njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from . import numba_cache  # noqa: F401  (before any kernel is defined: where its cache goes)
from .numba_cache import kernel
from .numba_fused import loss_weight

try:  # LLVM's count-trailing-zeros, one instruction
    from numba.cpython.unsafe.numbers import trailing_zeros
except ImportError:  # pragma: no cover - moved in some future Numba
    @kernel("int64(uint64)", inline="always")
    def trailing_zeros(x):
        """The number of trailing zero bits of x (x != 0)."""
        n = 0
        while x & np.uint64(1) == 0:
            x >>= np.uint64(1)
            n += 1
        return n


@intrinsic
def _near_scratch(typingctx, dtype):
    """A pointer to NEAR_CAP numbers of ``dtype`` on the stack of the calling kernel.

    Memory of the kernel's own (allocated once, at its entry): LLVM knows that it shares
    nothing with the kernel's array arguments, so a loop that writes it and reads them needs
    no runtime overlap checks, and a short one is held in registers.
    """
    def codegen(context, builder, signature, args):
        item = context.get_value_type(dtype.dtype)
        return cgutils.alloca_once(builder, item, size=context.get_constant(types.intp, NEAR_CAP))

    return types.CPointer(dtype.dtype)(dtype), codegen


@njit(inline="always")
def _set_positions(words, idx, shift):
    """Write the positions of the set entries of ``words`` into idx; returns how many.

    An entry is a bit (``shift`` 0: 64 entries a word) or a byte, set by its lowest bit
    (``shift`` 3: 8 a word); positions lowest first. The changes sit at random places, so a
    branch per entry would be mispredicted: a word's set entries come from its trailing zeros.
    """
    cnt = 0
    for w in range(words.shape[0]):
        word = words[w]
        while word != 0:
            idx[cnt] = (w << (6 - shift)) + (trailing_zeros(word) >> shift)
            cnt += 1
            word &= word - np.uint64(1)
    return cnt


@njit(inline="always")
def _add_rows(DT, j, K, idx, dl, cnt):
    """DT[j, :] += sum_e K[idx[e], :] dl[e], four rows of K per pass."""
    n = DT.shape[1]
    e = 0
    while e + 4 <= cnt:
        i0, i1, i2, i3 = idx[e], idx[e + 1], idx[e + 2], idx[e + 3]
        d0, d1, d2, d3 = dl[e], dl[e + 1], dl[e + 2], dl[e + 3]
        for q in range(n):
            DT[j, q] += (K[i0, q] * d0 + K[i1, q] * d1) + (K[i2, q] * d2 + K[i3, q] * d3)
        e += 4
    while e < cnt:
        i0, d0 = idx[e], dl[e]
        for q in range(n):
            DT[j, q] += K[i0, q] * d0
        e += 1


@njit(inline="always")
def _row_changes(K, ZT, DT, SX, c, aj, j, t, rise, words, idx, dl):
    """The sign changes of row j at step t (the set bits of ``words``): added to D^T[j].

    Returns how many; their positions and increments are left in idx and dl, and the counts
    SX updated. (Called only when a change was flagged: an inlined call with array arguments
    pays reference counting, which the pass over the row, run every step, must not.)
    """
    cnt = _set_positions(words, idx, 0)
    t32 = np.int32(t)
    for e in range(cnt):
        i = idx[e]
        sign = 2.0 * (ZT[j, i] > 0.0) - 1.0  # +1: the entry turned on, -1: off
        dl[e] = sign * rise * c[i] * aj
        SX[j, i] -= np.int32(sign) * t32
    _add_rows(DT, j, K, idx, dl, cnt)
    return cnt


@njit(inline="always")
def _tracked_row(UT, j, aj, leak, ft, P):
    """Row j's share of the tracked evaluation: ft += phi(U[j, :nt]) a_j, P[j] = U[j, nt:]."""
    nt = ft.shape[0]
    for q in range(nt):
        u = UT[j, q]
        ft[q] += max(u, leak * u) * aj
    for q in range(nt, UT.shape[1]):
        P[j, q - nt] = UT[j, q]


_SIG_STEPS = [f"int64({k}[:,::1], float64[:,::1], float64[:,::1], int32[:,::1], float64[::1], "
              f"float64[::1], float64[:,::1], int64[::1], float64, int64, int64, {k}[:,::1], "
              "float64[:,::1], float64[:,::1], int64[::1], float64[:,::1], float64[:,:,::1])"
              for k in ("float32", "float64")]


# contract: the row updates and the output sums as fused multiply-adds (one rounding instead of
# two, and fewer instructions).
@kernel(_SIG_STEPS, cache=True, nogil=True, fastmath={"reassoc", "nsz", "contract"})
def linear_steps(K, ZT, DT, SX, c, a, F, rows, leak, t0, k, KtT, DtT, UT, marks, FT, PT):
    """K steps in the linear regime, in place; returns the number of pattern changes.

    ZT, DT (m, n) float64: pre-activations and D^T. The pattern is never stored: it is
    M = 1[ZT > 0], so a change is a sign change of an entry of ZT. SX (m, n) int32 encodes how
    many steps each entry has been active, S = SX + M t after t regime steps (``t0`` before this
    call); it changes only where M does, by (M_old - M_new) t. c (n,) = (lr/n) g y; a (m,).
    ``F[rows[s]]`` receives the outputs phi(Z) a after step s + 1 where rows[s] >= 0: every
    step's for the regime checks (the caller checks them afterwards and redoes fewer steps if
    one fails), or, when the caller knows that no check can fail, only those it evaluates and
    the last (F would not fit in L1 and be read and written per step). The outputs are summed
    in a loop of their own over the row (still in L1), only on the steps F records.

    Row by row of the transposed state, all k steps of a row at a time: a row's update and its
    pattern changes touch only that row (K is symmetric), so a row (3 n numbers) stays in L1
    for the k steps, and the run's state is read from memory once per call instead of once per
    step. The pass over a row is branch-free (it vectorises): it marks the sign changes as the
    bits of a 64-bit word per 64 entries (a loop of constant length per word, which LLVM turns
    into vector compares and bit masks), found afterwards by their trailing zeros; the changes
    of one row and step are then added to D^T[j, :] four K rows per pass.
    Every row and every F[r, i] sees the same operations in the same order as k calls of one
    step, so the numbers do not depend on k.

    Tracked evaluation rows (``KtT`` (n, e) with e > 0: the test points' and the means' inner
    products with the training points, transposed, in K's dtype, which holds them exactly):
    their pre-activations UT (m, e) follow the same recursion as Z, U(t+1) = U(t) + Dt(t), and
    each change (i, j) adds KtT[i, :] dl to DtT[j, :]. Where marks[s] >= 0 the tracked rows
    after step s + 1 are recorded: the test outputs phi(U[:, :nt]) a into FT[marks[s]] (nt =
    FT's width) and the means' rows U[:, nt:] into PT[marks[s]] (m, e - nt), both from the row
    while it is in L1 (:func:`tracked_outputs` gives the same numbers from UT).
    """
    m, n = ZT.shape
    ne = KtT.shape[1]
    rise = 1.0 - leak
    F[...] = 0.0
    FT[...] = 0.0
    full = n // 64  # words of 64 entries; the last word holds the n % 64 left
    words = np.zeros(full + 1, np.uint64)
    idx = np.empty(n, np.int64)
    dl = np.empty(n, np.float64)
    changes = 0
    for j in range(m):
        aj = a[j]
        for s in range(k):
            flips = np.uint64(0)
            for w in range(full):
                bits = np.uint64(0)
                for p in range(64):
                    old = ZT[j, 64 * w + p]
                    z = old + DT[j, 64 * w + p]
                    ZT[j, 64 * w + p] = z
                    bits |= np.uint64((z > 0.0) != (old > 0.0)) << np.uint64(p)
                words[w] = bits
                flips |= bits
            bits = np.uint64(0)  # the n % 64 left, in a loop of their own: the constant
            for i in range(64 * full, n):  # length above is what lets LLVM vectorise a word
                old = ZT[j, i]
                z = old + DT[j, i]
                ZT[j, i] = z
                bits |= np.uint64((z > 0.0) != (old > 0.0)) << np.uint64(i - 64 * full)
            words[full] = bits
            flips |= bits
            cnt = 0
            if flips != 0:
                cnt = _row_changes(K, ZT, DT, SX, c, aj, j, t0 + s + 1, rise, words, idx, dl)
                changes += cnt
            row = rows[s]
            if row >= 0:  # the outputs, from the row while it is in L1
                for i in range(n):
                    z = ZT[j, i]
                    F[row, i] += max(z, leak * z) * aj
            if ne:
                for q in range(ne):
                    UT[j, q] += DtT[j, q]
                mark = marks[s]
                if mark >= 0:
                    _tracked_row(UT, j, aj, leak, FT[mark], PT[mark])
                if cnt:
                    _add_rows(DtT, j, KtT, idx, dl, cnt)
    return changes


#: Most entries a row's near set holds in a block (:func:`linear_blocks`): the sign changes
#: of a near step are the set bits of one 64-bit word.
NEAR_CAP = 64
#: Fewest entries of a near set's increments that a change updates: LLVM vectorises the update
#: of 48 entries or more, and unrolls that of 16 or 32 into scalar operations.
NEAR_WIDE = 48

_SIG_BLOCKS = [f"int64({k}[:,::1], float64[:,::1], float64[:,::1], int32[:,::1], "
               "float64[::1], float64[::1], float64[::1], float64, int64, int64, int64, "
               "float64[::1], float64, float64[::1], uint8[:,::1], float32[:,::1], int64[::1])"
               for k in ("float32", "float64")]


@kernel(_SIG_BLOCKS, cache=True, nogil=True, fastmath={"reassoc", "nsz", "contract"})
def linear_blocks(K, ZT, DT, SX, c, a, f, leak, t0, k, T, KMAX, widen, spread, moved,
                  slope, counts):
    """K steps in the linear regime in blocks of at most T, in place; returns the changes.

    The recursion and the state of :func:`linear_steps` (without tracked rows); ``f`` (n,)
    receives the outputs after the last step. The k steps are cut into the fewest blocks of at
    most T steps, of equal lengths (to a step).

    Within a block a row's entries far from their kink cannot change sign, so only its near
    set N (at most :data:`NEAR_CAP` entries) is stepped, as :func:`linear_steps` steps it, with
    a compact copy of K on N: a chattering entry costs |N| per change instead of n. The others
    follow z(s) = z(0) + s d(0) + sum_{p in N} K[:, p] w_p B_p(s), w_p = (1 - leak) c_p a_j and
    B_p(s) the steps p spent in the other state than at the block's start, and are brought up
    to date once at its end with a row of K per near entry that moved (one pass for z and d).

    The set is checked, not trusted. Writing B_p(s) = s B_p(T)/T + r_p(s) with |r_p| <= R_p
    (the largest deviation from the chord, at the near entry's changes), an entry q outside N
    has z_q(s) within KMAX_q |w| sum_p R_p of the straight line from z_q(0) to z_q(T) (KMAX_q:
    the largest |K_qp|, p != q; |w|: the largest |w_p|). If that line keeps its side with this
    margin at both ends, z_q kept its sign at every step; an entry that fails joins N and the
    block is stepped again (its counts untouched until it passes). So the pattern, the counts
    S and with them C are those of the step-by-step recursion; Z, D and f agree with it to
    float64 rounding (their sums run in another order).

    N is chosen from where the entries head: those whose straight line (at the row's pace in
    its last block, ``slope``, or at d(0) before its first) comes within ``widen`` times the
    last block's margin (``spread``, sum_p R_p; negative before the first block) of the kink,
    and those that changed in the last block (``moved``). These hints, (m,), (m, n) and (m, n),
    carry over from call to call; they decide only which entries are stepped exactly. A row
    whose set would exceed the cap steps that block one step at a time. ``counts`` += (blocks,
    blocks stepped again, blocks stepped one step at a time).
    """
    m, n = ZT.shape
    cap = NEAR_CAP
    rise = 1.0 - leak
    f[:] = 0.0
    near = np.zeros(n, np.uint8)     # membership of N
    where = np.empty(n, np.int64)    # N's entries
    zs, ds, zf, df = np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    zN, dN, wN = np.empty(cap), np.empty(cap), np.empty(cap)
    KN = np.zeros((cap, cap))
    m0 = np.empty(cap, np.int64)
    sx0 = np.empty(cap, np.int32)
    sxN = np.empty(cap, np.int32)
    act = np.empty(cap, np.int64)
    B = np.empty(cap)
    slopeB = np.empty(cap)
    R = np.empty(cap)
    ev_p = np.empty(cap * T, np.int64)  # the near changes of a block: entry, step, B there
    ev_u = np.empty(cap * T, np.int64)
    ev_b = np.empty(cap * T)
    gk = np.empty(cap, np.int64)     # a block's moved near entries: entry, w B, w dM
    gz, gd = np.empty(cap), np.empty(cap)
    # a block one step at a time: linear_steps on one row, no outputs, no tracked rows
    F1 = np.empty((1, n))
    unmarked = np.full(T, -1, np.int64)
    KtT0 = np.empty((n, 0), K.dtype)
    UT0 = np.empty((1, 0))
    FT0 = np.empty((0, 0))
    PT0 = np.empty((0, 1, 0))
    wmax = 0.0
    for i in range(n):
        wmax = max(wmax, abs(c[i]))
    changes = 0
    for j in range(m):
        aj = a[j]
        wj = rise * wmax * abs(aj)
        s = 0
        while s < k:
            left = k - s
            tb = -(-left // -(-left // T))  # the fewest blocks of <= T, as equal as can be
            start = t0 + s  # the regime's step before the block
            cold = spread[j] < 0.0
            margin = widen * wj * (4.0 if cold else spread[j] + 1.0)
            for i in range(n):
                zs[i] = ZT[j, i]
                ds[i] = DT[j, i]
            # (branch-free, in two loops: both vectorise)
            if cold:
                for i in range(n):
                    near[i] = _heads_near(zs[i], zs[i] + tb * ds[i], KMAX[i] * margin,
                                          moved[j, i])
            else:
                for i in range(n):
                    near[i] = _heads_near(zs[i], zs[i] + tb * np.float64(slope[j, i]),
                                          KMAX[i] * margin, moved[j, i])
            while True:
                L = 0
                for i in range(n):
                    if near[i]:
                        if L < cap:
                            where[L] = i
                        L += 1
                if L > cap:
                    break
                ne = _near_block(K, ZT, SX, c, aj, j, start, tb, rise, where, L, zs, ds, zN,
                                 dN, wN, KN, m0, sx0, sxN, act, ev_p, ev_u, ev_b)
                # B_p(T), R_p and the far entries at the block's end
                t1 = start + tb
                total = 0.0
                for p in range(L):
                    B[p] = (sxN[p] - sx0[p]) + (np.int64(zN[p] > 0.0) - m0[p]) * t1
                    slopeB[p] = B[p] / tb  # the chord's slope
                    R[p] = 0.0
                for e in range(ne):
                    p = ev_p[e]
                    R[p] = max(R[p], abs(ev_b[e] - ev_u[e] * slopeB[p]))
                sum_r = 0.0
                for p in range(L):
                    sum_r += R[p]
                    total += abs(wN[p] * B[p])
                for i in range(n):
                    zf[i] = zs[i] + tb * ds[i]
                    df[i] = ds[i]
                # The near entries that moved (w B != 0) or changed (at the last step, with
                # B = 0): their rows of K into z and d, four per pass (as _add_rows).
                nm = 0
                for p in range(L):
                    wz = wN[p] * B[p]
                    wd = wN[p] * (np.int64(zN[p] > 0.0) - m0[p])
                    if wz != 0.0 or wd != 0.0:
                        gk[nm] = where[p]
                        gz[nm] = wz
                        gd[nm] = wd
                        nm += 1
                e = 0
                while e + 4 <= nm:
                    k0, k1, k2, k3 = gk[e], gk[e + 1], gk[e + 2], gk[e + 3]
                    wz0, wz1, wz2, wz3 = gz[e], gz[e + 1], gz[e + 2], gz[e + 3]
                    wd0, wd1, wd2, wd3 = gd[e], gd[e + 1], gd[e + 2], gd[e + 3]
                    for i in range(n):
                        v0, v1 = np.float64(K[k0, i]), np.float64(K[k1, i])
                        v2, v3 = np.float64(K[k2, i]), np.float64(K[k3, i])
                        zf[i] += (v0 * wz0 + v1 * wz1) + (v2 * wz2 + v3 * wz3)
                        df[i] += (v0 * wd0 + v1 * wd1) + (v2 * wd2 + v3 * wd3)
                    e += 4
                while e < nm:
                    k0, wz0, wd0 = gk[e], gz[e], gd[e]
                    for i in range(n):
                        v0 = np.float64(K[k0, i])
                        zf[i] += v0 * wz0
                        df[i] += v0 * wd0
                    e += 1
                bound = wj * sum_r * (1.0 + 1e-9)
                failed = 0
                for i in range(n):  # (branch-free: it vectorises)
                    z0, z1 = zs[i], zf[i]
                    # rounding: the far update's terms are at most KMAX_i |w_p B_p| each
                    slack = 1e-9 * (abs(z0) + abs(z1) + tb * abs(ds[i]) + KMAX[i] * total)
                    bad = _heads_near(z0, z1, KMAX[i] * bound + slack, np.uint8(0))
                    failed += bad & (near[i] ^ np.uint8(1))
                    near[i] |= bad
                if failed == 0:
                    break
                counts[1] += 1
            counts[0] += 1
            if L > cap:  # too many near entries: this block one step at a time
                counts[2] += 1
                changes += linear_steps(K, ZT[j:j + 1], DT[j:j + 1], SX[j:j + 1], c,
                                        a[j:j + 1], F1, unmarked[:tb], leak, start, tb, KtT0,
                                        UT0, UT0, unmarked[:tb], FT0, PT0)
                for i in range(n):
                    moved[j, i] = np.uint8((ZT[j, i] > 0.0) != (zs[i] > 0.0))
                spread[j] = -1.0  # (no margin measured)
            else:
                changes += ne
                for i in range(n):
                    ZT[j, i] = zf[i]
                    DT[j, i] = df[i]
                    moved[j, i] = 0
                for p in range(L):
                    kp = where[p]
                    ZT[j, kp] = zN[p]
                    DT[j, kp] = dN[p]
                    SX[j, kp] = sxN[p]
                    moved[j, kp] = np.uint8(sxN[p] != sx0[p])
                spread[j] = sum_r
            for i in range(n):
                slope[j, i] = (ZT[j, i] - zs[i]) / tb
            s += tb
        for i in range(n):
            z = ZT[j, i]
            f[i] += max(z, leak * z) * aj
    return changes


@njit(inline="always")
def _heads_near(z0, z1, room, moved):
    """1 where z0 and z1 differ in sign or one is within ``room`` of the kink, or ``moved``."""
    crosses = (z0 > 0.0) != (z1 > 0.0)
    close = min(abs(z0), abs(z1)) <= room
    return moved | np.uint8(crosses | close)


@njit(inline="always")
def _near_block(K, ZT, SX, c, aj, j, start, tb, rise, where, L, zs, ds, zN, dN, wN, KN, m0,
                sx0, sxN, act, ev_p, ev_u, ev_b):
    """Step the near set ``where[:L]`` of row j through the block's tb steps.

    With the other entries' contributions to its increments frozen (they do not change sign):
    zN, dN, the counts sxN and each change's (entry, step in the block, B there) in ev_*;
    returns how many changes. The set is padded to a multiple of 16 with entries that never
    change (z = 1, d = 0, no coupling) and stepped by the stepping function of that length;
    its increments and its copy of K (from K in the working dtype, which holds the same
    numbers as in float64 in half the cache lines) are padded with zeros to NEAR_WIDE.
    """
    if L == 0:  # nothing to step (the scratch holds an earlier row's set)
        return 0
    lp = (L + 15) // 16 * 16
    wide = max(lp, NEAR_WIDE)  # what a change updates (_near_steps)
    for p in range(L):
        kp = np.uint64(where[p])  # (unsigned: no wraparound for negative indices)
        zN[p] = zs[kp]
        dN[p] = ds[kp]
        wN[p] = rise * c[kp] * aj
        m0[p] = zs[kp] > 0.0
        sx0[p] = SX[j, kp]
        for q in range(L):
            KN[p, q] = np.float64(K[kp, np.uint64(where[q])])
        for q in range(L, wide):
            KN[p, q] = 0.0
    for p in range(L, lp):
        zN[p] = 1.0
        dN[p] = 0.0
        m0[p] = 1
        sx0[p] = 0
    for p in range(lp, wide):  # read by the changes' update, never stepped
        dN[p] = 0.0
    if lp <= 32:
        if lp <= 16:
            return _near_steps_16(KN, zN, dN, wN, m0, sx0, sxN, act, start, tb, ev_p, ev_u,
                                  ev_b)
        return _near_steps_32(KN, zN, dN, wN, m0, sx0, sxN, act, start, tb, ev_p, ev_u, ev_b)
    if lp <= 48:
        return _near_steps_48(KN, zN, dN, wN, m0, sx0, sxN, act, start, tb, ev_p, ev_u, ev_b)
    return _near_steps_64(KN, zN, dN, wN, m0, sx0, sxN, act, start, tb, ev_p, ev_u, ev_b)


def _near_steps(lp):
    """The stepping of a near set padded to ``lp`` entries, a constant of the compiled code.

    A constant trip count lets LLVM unroll the passes over the set whole, with no remainder
    loops (docs/performance.md has the measurement). A change updates ``wide`` entries of the
    increments, at least :data:`NEAR_WIDE`: LLVM unrolls shorter updates whole before it
    vectorises, and leaves them scalar.
    """
    wide = max(lp, NEAR_WIDE)

    # contract only: each entry's increments are a chain of fused multiply-adds in the order
    # of the changes, whatever LLVM makes of the loops.
    @njit(fastmath={"contract"})
    def steps(KN, zN, dN, wN, m0, sx0, sxN, act, start, tb, ev_p, ev_u, ev_b):
        """Step the padded near set through tb steps from the regime's step ``start``.

        In place on zN and dN (dN and the rows of KN padded with zeros to ``wide`` entries); the
        counts into sxN, each change (entry, step in the block, B there) into ev_*; returns how
        many changes. ``act`` counts each entry's active steps in
        the pass itself (vectorised), so that a change's B and the counts come from it instead
        of from bookkeeping per change. A step's changes are added to a copy of dN on the
        kernel's stack, a row of KN each as it is found: the copy stays in registers through
        them (48 entries fill 12 of AVX2's 16 vector registers), where dN itself would be
        loaded and stored per change, behind a check that it does not overlap KN.
        """
        dS = carray(_near_scratch(np.float64), (wide,))
        for p in range(lp):
            act[p] = 0
        ne = np.uint64(0)  # unsigned indices: no wraparound for negative ones
        for u in range(tb):
            bits = np.uint64(0)
            for p in range(lp):
                old = zN[p]
                z = old + dN[p]
                zN[p] = z
                act[p] += np.int64(old > 0.0)
                bits |= np.uint64((z > 0.0) != (old > 0.0)) << np.uint64(p)
            if bits == 0:
                continue
            done = np.int64(u + 1)
            for q in range(wide):
                dS[q] = dN[q]
            while bits != 0:
                p = np.uint64(trailing_zeros(bits))
                bits &= bits - np.uint64(1)
                w = wN[p]
                d = w if zN[p] > 0.0 else -w
                # B_p after u + 1 steps: the steps p was active in, less (u + 1) m0_p
                ev_p[ne] = p
                ev_u[ne] = done
                ev_b[ne] = act[p] - done * m0[p]
                ne += np.uint64(1)
                for q in range(wide):
                    dS[q] += KN[p, q] * d
            for q in range(wide):
                dN[q] = dS[q]
        # S_p(t1) - S_p(start) = act_p with S = SX + M t
        t1 = start + tb
        for p in range(lp):
            sxN[p] = np.int32(sx0[p] + m0[p] * start + act[p] - np.int64(zN[p] > 0.0) * t1)
        return np.int64(ne)

    return steps


_near_steps_16, _near_steps_32, _near_steps_48, _near_steps_64 = (
    _near_steps(lp) for lp in (16, 32, 48, 64))


@kernel("void(float64[:,::1], float64[::1], float64, float64[::1], float64[:,::1])", cache=True,
      nogil=True, fastmath={"reassoc", "nsz", "contract"})
def tracked_outputs(UT, a, leak, ft, P):
    """The tracked evaluation rows' outputs from their pre-activations UT (m, e).

    The test outputs ft = phi(U[:, :nt]) a (nt = ft's length) and the means' rows P = U[:, nt:] (m,
    e - nt), with the same operations in the same order as :func:`linear_steps`'s record.
    """
    ft[:] = 0.0
    for j in range(UT.shape[0]):
        _tracked_row(UT, j, a[j], leak, ft, P)


@kernel("boolean(float64[::1], float64[::1], float64, boolean, int64)", cache=True, nogil=True)
def frozen(f, y, g0, single, loss):
    """True when every loss weight -l'(y_i f_i) equals g0 in the working precision."""
    for i in range(f.shape[0]):
        g = loss_weight(y[i] * f[i], loss)
        if single:
            if np.float32(g) != np.float32(g0):
                return False
        elif g != g0:
            return False
    return True


@kernel("int64(float64[:,::1], float64[::1], float64, boolean, int64)", cache=True, nogil=True)
def first_thawed(F, y, g0, single, loss):
    """The first s at which the outputs F[s] leave a loss weight off g0 (-1: none does)."""
    for s in range(F.shape[0]):
        if not frozen(F[s], y, g0, single, loss):
            return s
    return -1


_SIG_C = [f"void(float64[:,::1], int32[:,::1], float64[:,::1], float64[::1], float64[::1], "
          f"float64, int64, {t}[:,::1])" for t in ("float32", "float64")]


@kernel(_SIG_C, cache=True, nogil=True)
def write_c(ZT, SX, Ct0T, c, a, leak, steps, C):
    """Write C = C0 + (a c) (leak steps + (1 - leak) S), (m, n), into C.

    In the state's layout and C's dtype, with S = SX + 1[ZT > 0] steps the steps each entry
    has been active (:func:`linear_steps`).

    Contiguous and branch-free, so it streams at memory speed; the engine's C^T is its
    transpose. No fastmath: the engine's NumPy expression for C gives the same bits.
    """
    m, n = ZT.shape
    rise = 1.0 - leak
    base = leak * steps
    fs = np.float64(steps)  # S in float64 (exact below 2^53): int64 -> double has no AVX2 form
    for j in range(m):
        aj = a[j]
        for i in range(n):
            active = np.float64(SX[j, i]) + fs * (ZT[j, i] > 0.0)
            C[j, i] = Ct0T[j, i] + (c[i] * aj) * (base + rise * active)


@kernel("void(float64[:,::1], float64[::1], float64[::1], float64, float64[:,::1])", cache=True,
        nogil=True)
def coefficients_t(ZT, c, a, leak, VT):
    """Write V^T = (a c) (leak + (1 - leak) 1[ZT > 0]), (m, n), into VT.

    The coefficients of the pattern of Z^T in one pass. No fastmath: the same bits as the NumPy
    expression ``a[:, None] * c[None, :] * (leak + (1 - leak) * (ZT > 0))``.
    """
    m, n = ZT.shape
    rise = 1.0 - leak
    for j in range(m):
        aj = a[j]
        for i in range(n):
            VT[j, i] = (aj * c[i]) * (leak + rise * np.float64(ZT[j, i] > 0.0))


@njit(inline="always")
def _e_row(e, j, GD, GT, MT, y, lr_n, leak):
    """Row j of the near-linear regime's E without a_j.

    E_q = (lr/n) y_q (leak GD_q + (1 - leak)(GT_jq + M_jq GD_q)), so that Ze_ij = a_j K[i, :] e.
    """
    rise = 1.0 - leak
    for q in range(e.shape[0]):
        e[q] = (lr_n * y[q]) * (leak * GD[q] + rise * (GT[j, q] + MT[j, q] * GD[q]))


@njit(inline="always")
def _dot_row(K, i, e):
    """K[i, :] e, in order."""
    s = 0.0
    for q in range(e.shape[0]):
        s += K[i, q] * e[q]
    return s


_SIG_NEAR = [f"UniTuple(int64, 2)({k}[:,::1], float64[:,::1], float64[:,::1], float64[:,::1], "
             "uint8[:,::1], int32[:,::1], float64[:,::1], float64[::1], float64[::1], "
             "float64[::1], "
             "float64[::1], float64[::1], float64[::1], float64[::1], float64, float64, int64, "
             "int64, int64, int64, int64, float64)" for k in ("float32", "float64")]


@kernel(_SIG_NEAR, cache=True, nogil=True, fastmath={"nsz", "contract"})
def near_linear_steps(K, AK, ZT, DT, MT, SX, GT, GD, DL, g, gref, c, y, a, lr_n, leak, loss,
                      t0, k, max_unsafe, max_unsure, scale):
    """Take up to k steps of the near-linear regime, in place, one step at a time.

    The weights of a step depend on every row of the last. Returns (steps taken, pattern
    changes).

    After the loss weights leave -l'(0) the outputs are still small and the weights g move
    little from step to step. Against reference weights ``gref`` (those at entry) split
    Z = Zl + Ze: Zl follows the linear regime's recursion with the fixed c = (lr/n) gref y
    (ZT, DT, SX as in :func:`linear_steps`, but the pattern is stored, MT, since it is that of
    Z, not of Zl), and Ze = K E with E_ij = (lr/n) y_i a_j sum_s (g_i(s) - gref_i) phi'_ij(s),
    kept as E_ij = (lr/n) y_i a_j (leak GD_i + (1 - leak) (GT_ij + M_ij GD_i)) with
    GD = sum_s (g(s) - gref) (GT changes only where M does, like SX). Since
    |Ze_ij| <= |a_j| beta_i with beta = (lr/n) |K| DL and DL = sum_s |g(s) - gref| (phi' <= 1),
    an entry with |Zl| above that bound has the sign of Zl, and only the others ("unsure";
    the entries on their kink) are decided exactly, O(n) each; an output differs from that of
    Zl by at most ||a||^2 beta_i, and only the outputs whose weight that could change are
    summed exactly, O(n m) each. Weights are those of the working precision (float32), as the
    linear regime's check is. AK = |K| in float64. ``g`` holds the weights of the next step
    and is updated. Stops after a step with more than ``max_unsafe`` unsure entries or
    ``max_unsure`` exact outputs (the caller rebases). ``scale`` >= 1 widens the bound (tests
    widen it so that the exact paths run often; the numbers do not change).
    """
    m, n = ZT.shape
    rise = 1.0 - leak
    asq = 0.0
    for j in range(m):
        asq += a[j] * a[j]
    beta = np.empty(n)
    F = np.empty(n)
    e = np.empty(n)
    words = (n + 7) // 8
    flags = np.zeros(8 * words, np.uint8)
    packed = flags.view(np.uint64)
    idx = np.empty(8 * words, np.int64)
    dl = np.empty(n)
    changes = taken = 0
    for s in range(k):
        t = np.int32(t0 + s + 1)  # the step count after this step
        for i in range(n):
            d = g[i] - gref[i]
            GD[i] += d
            DL[i] += abs(d)
        # beta = (lr/n) |K| DL, as a sum of columns (K is symmetric) so that it vectorises;
        # the relative margin covers the float64 rounding of the sums involved.
        beta[:] = 0.0
        for q in range(n):
            w = DL[q]
            for i in range(n):
                beta[i] += AK[q, i] * w
        for i in range(n):
            beta[i] *= lr_n * (1.0 + 1e-9) * scale
        F[:] = 0.0
        unsafe = 0
        for j in range(m):
            aj = a[j]
            aa = abs(aj)
            # Branch-free: the sign of Zl gives the pattern except where |Zl| is within the
            # bound on Ze (flag bit 1), decided exactly below; bit 0 marks a change.
            near = 0
            for i in range(n):
                z = ZT[j, i] + DT[j, i]
                ZT[j, i] = z
                F[i] += max(z, leak * z) * aj
                hard = np.uint8(abs(z) <= aa * beta[i])
                flags[i] = np.uint8((z > 0.0) != (MT[j, i] != 0)) | (hard << 1)
                near += hard
            if near:
                _e_row(e, j, GD, GT, MT, y, lr_n, leak)  # before this row's changes
                for i in range(n):
                    if flags[i] & 2:
                        exact = (ZT[j, i] + aj * _dot_row(K, i, e)) > 0.0
                        flags[i] = np.uint8(exact != (MT[j, i] != 0))
                    else:
                        flags[i] &= 1
                unsafe += near
            cnt = _set_positions(packed, idx, 3)
            if cnt == 0:
                continue
            for u in range(cnt):
                i = idx[u]
                sign = 1.0 - 2.0 * MT[j, i]  # +1: the entry turns on
                MT[j, i] = 1 - MT[j, i]
                SX[j, i] -= np.int32(sign) * t
                GT[j, i] -= sign * GD[i]
                dl[u] = sign * rise * c[i] * aj
            changes += cnt
            _add_rows(DT, j, K, idx, dl, cnt)
        # The next step's weights: exact where the bound on the output cannot change them.
        unsure = 0
        for i in range(n):
            r = asq * beta[i]
            lo = np.float32(loss_weight(y[i] * F[i] - r, loss))
            hi = np.float32(loss_weight(y[i] * F[i] + r, loss))
            if lo == hi:
                g[i] = lo
            else:
                idx[unsure] = i
                unsure += 1
        if unsure:  # their outputs phi(Zl + Ze) a summed exactly, E's rows formed once each
            fu = np.zeros(unsure)
            for j in range(m):
                _e_row(e, j, GD, GT, MT, y, lr_n, leak)
                for u in range(unsure):
                    z = ZT[j, idx[u]] + a[j] * _dot_row(K, idx[u], e)
                    fu[u] += max(z, leak * z) * a[j]
            for u in range(unsure):
                g[idx[u]] = np.float32(loss_weight(y[idx[u]] * fu[u], loss))
        taken += 1
        if unsafe > max_unsafe or unsure > max_unsure:
            break
    return taken, changes


@kernel(["void(float64[::1], float64[::1], int64, float64[::1])"], cache=True, nogil=True)
def weights32(f, y, loss, g):
    """g_i = -l'(y_i f_i) rounded to float32 (the working precision's weights), as float64."""
    for i in range(f.shape[0]):
        g[i] = np.float32(loss_weight(y[i] * f[i], loss))
