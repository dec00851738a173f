"""Tunables: every knob that trades speed, memory or resolution, in one place.

Changing a value here never changes a result beyond rounding, with one exception documented
below (``DATA_BLOCK``, which defines the random stream and therefore the data itself).
"""

#: Width (columns of p) of one block of the data generator. Each block of X, X_test, W0 is drawn
#: from its own random stream keyed by (seed, run, stream, block), so the same (seed, run) gives
#: the same numbers whether a matrix is drawn whole or block by block. Changing this value changes
#: the data drawn for a seed: it is part of the random-stream definition, not a speed knob.
DATA_BLOCK = 8192

#: Runs with at most this many steps are evaluated at every step; longer runs on a log grid.
EVAL_EVERY_STEP_UP_TO = 200

#: Number of log-spaced evaluation points for long runs (before adding the histogram steps).
EVAL_LOG_POINTS = 160

#: Record a segment's evaluations on the calling thread while the next segment steps on the
#: host threads (``fastgrok.driver._record_behind``), where nothing recorded reads the engine.
DRIVER_OVERLAP = True
#: Most items the recording may fall behind the steps (evaluations, progress, a batch's start).
DRIVER_QUEUE = 256

#: Fraction of the currently available memory a run may plan to use before it is refused.
MEMORY_FRACTION = 0.8

#: What the disk check before a run or sweep counts per history row (parquet and CSV together,
#: with room to spare) and for a run's figures; the check refuses when the disk has less free.
OUTPUT_ROW_BYTES = 512
OUTPUT_FIGURE_BYTES = 2 << 20

#: Refresh interval of the progress bar on a terminal, seconds.
PROGRESS_MIN_INTERVAL = 0.5

#: Interval between progress lines when the output is not a terminal (a log file), seconds.
PROGRESS_LOG_INTERVAL = 30.0

#: Direct method, CPU: bytes of one column tile of X plus W (the tile is reused from cache by the
#: update and the forward product). Changes float32 rounding slightly, never the thread count.
DIRECT_TILE_BYTES = 8 << 20

#: Direct method, CPU: fixed tile width in columns (0 = derive it from DIRECT_TILE_BYTES).
#: Tests set it small so that tail tiles are exercised.
DIRECT_TILE_COLS = 0

#: Direct method, CPU: number of chunks of tiles, each reduced on one thread in float64 and merged
#: in order. Fixed (not the thread count) so results do not depend on n_threads; it bounds the
#: usable parallelism and costs chunks x (n + n_test) x m x 8 bytes of partial sums.
DIRECT_CHUNKS = 8

#: Direct method, CPU: run the chunks in one Numba parallel region calling the BLAS directly
#: (False: on fastgrok's Python thread pool). The same bits either way; tests compare the two.
DIRECT_NATIVE_PASS = True

#: Gram method: memory for the state of the runs held at once (runs are batched so that many
#: small per-run products keep every core or the device busy).
GRAM_BATCH_BYTES = 2 << 30

#: Gram method on the host threads: at most this much of GRAM_BATCH_BYTES per CPU this process
#: may run on. Several runs per thread, but small enough that each batch reuses the pages the
#: one before it touched: a page touched for the first time costs a page fault (dear in a
#: virtual machine), and with all of the left panel's runs in one batch the faults took about a
#: quarter of its time (docs/performance.md, "Runs per batch").
GRAM_HOST_BATCH_BYTES = 128 << 20

#: Gram method, CPU: take incremental steps while a run is in the linear regime (every loss
#: weight equal to its value at 0 in the working precision; docs/design.md 2.4). The same
#: recursion as the dense step, with different rounding; False gives dense steps only. Read
#: when an engine is built. What it gains and how its accuracies compare with dense steps:
#: `python bench/linear_vs_dense.py` (docs/performance.md).
GRAM_LINEAR_REGIME = True

#: Linear regime: most pattern changes per step, as a fraction of a run's n m pattern entries,
#: at which incremental steps are taken. A change costs O(n) (a row of K added to D, and with
#: tracked evaluation rows a row of Kt too), a dense step O(n^2 m) with GEMM efficiency plus,
#: when every step is evaluated, a product of the same size for the test outputs. A run enters
#: the regime after a dense step that changed at most half of this fraction, and leaves for
#: dense steps when its incremental steps change more. The left panel's first steps change
#: 47%, 24%, 12% and 6% of the pattern, then about 2.5%: with 1/4 its runs enter after the
#: third, when incremental steps already cost less than dense ones (docs/design.md 2.4).
GRAM_LINEAR_MAX_CHANGES = 1 / 4

#: Most steps the driver asks an engine to take in one call between evaluations. The gram
#: engines take a run's steps together while its state is in cache (the linear regime fuses
#: them row by row); the progress bar and the checkpoints move once per call. The numbers do
#: not depend on it, but for the linear regime's Z and training outputs at float64 rounding
#: (``GRAM_LINEAR_BLOCK``).
STEPS_PER_CALL = 64

#: The same while every run of a gram engine's batch is in the linear regime: its steps are
#: cheap (the right panel's 100 runs take 1024 steps in about 5 s) and its blocks as long as
#: the calls.
GRAM_LINEAR_STEPS_PER_CALL = 1024

#: Linear regime: when the driver evaluates at least every this many steps on average (the
#: left panel: every step), runs in the regime keep their test outputs and projections up to
#: date as the pattern changes (O(n_test) more per change) instead of forming Kt C^T (a
#: product of n_test n m) at each evaluation. The same numbers up to the working precision's
#: rounding (the tracked ones are float64 sums, the products are in the working dtype).
GRAM_LINEAR_TRACK_GAP = 4
#: Otherwise, while the driver's first evaluations are less than this many steps apart (the
#: right panel: to step 586), the runs in the regime keep them up to date all the same, up to
#: the last evaluation before the first longer gap, in one kernel call per refresh period;
#: then they drop them, and are evaluated from C. The calls between evaluations that far
#: apart would be too short for blocks anyway (``GRAM_LINEAR_BLOCK_MIN``). 0: never.
GRAM_LINEAR_TRACK_PREFIX = 32

#: Near-linear regime (float32 runs on the CPU, docs/design.md 2.5): after its loss weights
#: leave -l'(0), a run whose steps change little of its pattern keeps stepping incrementally,
#: with the weights' small moves bounded and the few entries and outputs the bound cannot
#: decide computed exactly. False gives dense steps once the weights move. What it gains:
#: `python bench/linear_vs_dense.py --near` (docs/performance.md).
GRAM_NEAR_LINEAR = True

#: Near-linear regime: most pattern changes per step, as a fraction of a run's n m entries,
#: at which near-linear steps are taken (a run starts after a dense step that changed at most
#: half of it), and most entries its bound may leave undecided in a step (the stretch then
#: ends and the state is rebased).
GRAM_NEAR_MAX_CHANGES = 1 / 16

#: Near-linear regime: a stretch between rebases shorter than this many steps means the
#: weights move too fast for it to pay; the run takes dense steps from then on.
GRAM_NEAR_MIN_STEPS = 16

#: Near-linear regime: factor (>= 1) on the bound that says which entries and outputs are
#: decided exactly. Tests raise it so that the exact paths run often; any value >= 1 gives
#: the same numbers, larger ones more slowly.
GRAM_NEAR_BOUND_SCALE = 1.0

#: Linear regime: longest block of incremental steps in which only each neuron's entries near
#: their kink are stepped, the others checked and brought up to date at the block's end
#: (:func:`fastgrok.kernels.gram_linear.linear_blocks`), for calls of at least
#: ``GRAM_LINEAR_BLOCK_MIN`` steps that read only their last step's outputs (the right panel's);
#: shorter calls, and 1 here, step every entry every step (:func:`linear_steps`: a block's fixed
#: costs, its near set and its check, pay for themselves only over tens of steps). The pattern
#: and C are the same either way; Z and the training outputs agree to float64 rounding, and
#: depend at that level on how the steps are split into calls.
GRAM_LINEAR_BLOCK = 1024
GRAM_LINEAR_BLOCK_MIN = 32

#: Linear regime, blocks: how wide a margin (in units of the last block's bound) brings an
#: entry into a block's near set. Any value gives the same pattern (an entry left out that
#: comes too close is caught and the block stepped again); it trades bigger near sets against
#: blocks stepped twice.
GRAM_LINEAR_BLOCK_WIDEN = 8.0

#: Linear regime: every this many incremental steps, D = K V and Z = Z0 + K C^T are recomputed
#: exactly, so the float64 rounding of the increments cannot accumulate.
GRAM_LINEAR_REFRESH = 1000

#: Reduced representation: largest p run in float32. Inner products of the reduced vectors mix
#: diagonal terms ~p with cross terms ~sqrt(p); in float32 the diagonal's rounding, eps32 * p,
#: is a fraction eps32 * sqrt(p) of the cross terms: 6e-4 at p = 1e8, 2e-3 at 1e9, 6e-2 at 1e12.
#: Above this p a float32 request runs in float64 (and the result's info says so).
REDUCED_FLOAT32_MAX_P = 10**8
