// CUDA kernels of fastgrok, compiled by CuPy (cupy.RawModule) on first use.
//
// One launch fuses the forward pass from the pre-activations, the loss weights and the masked,
// scaled update coefficients (docs/design.md section 1):
//   f_i = sum_j phi(Z_ij) a_j                          (row reduction in double)
//   c_i = (lr / n) * r(y_i, f_i)        (r = -dl/df: g(y f) y, or y - f for the square loss)
//   V_ij = c_i a_j phi'(Z_ij)        (written, or added into V when accumulate != 0)
// with phi(z) = max(z, leak z), phi'(z) = 1 if z > 0 else leak (ReLU: leak = 0) for activation
// code 0, or a smooth activation (code 1: max(z, 0)^q; code 2: the Huberised leaky ReLU of
// smoothing h; q or h is `param`), and the loss code 0 logistic, 1 exponential, 2 hinge,
// 3 square (the order of fastgrok.config.LOSSES). The activation and the loss are scalars,
// uniform over the launch: their switches never diverge threads.
// The big products (X W^T, V^T X, K C^T) go through cuBLAS from Python. As on the CPU, V is
// computed in double and rounded to T once (when accumulating: the old value is added in double
// and the sum rounded once, which is what the Numba kernel does).
//
// The extern "C" signatures at the end are the launch contract: fastgrok/kernels/cuda.py reads
// them from this file and checks every launch's arguments against them.
//
// Rows are (run, sample) pairs: Z is (rows, m) for R runs stacked, row r belongs to run
// r / n_per_run, whose second layer is a + (r / n_per_run) * m. One block per row.

// Threads per block, passed by the launcher (-DFG_THREADS=...) so that the launch and the shared
// array below cannot disagree; the tree reduction halves it, so it must be a power of two.
#ifndef FG_THREADS
#error "compile with -DFG_THREADS=<threads per block>; fastgrok/kernels/cuda.py passes it"
#endif
static_assert(FG_THREADS > 0 && (FG_THREADS & (FG_THREADS - 1)) == 0,
              "FG_THREADS must be a power of two (tree reduction)");

__device__ double loss_weight(double z, int loss) {
    if (loss == 0) {
        // sigmoid(-z) = exp(-softplus(z)), softplus computed without overflow
        return exp(-(fmax(z, 0.0) + log1p(exp(-fabs(z)))));
    }
    if (loss == 1) return exp(-z);
    if (loss == 2) return z < 1.0 ? 1.0 : 0.0;
    return 1.0 - z;  // square
}

// -dl/df of one sample: g(y f) y, and for the square loss y - f (real targets too; for labels
// +-1 the same bits as g y).
__device__ double loss_residual(double y, double f, int loss) {
    if (loss == 3) return y - f;
    return loss_weight(y * f, loss) * y;
}

// phi and phi' of activation code `act` (fastgrok.kernels.numba_fused.smooth_phi for 1, 2).
__device__ double phi(double z, int act, double leak, double param) {
    if (act == 0) return z > 0.0 ? z : leak * z;
    if (act == 1) return pow(fmax(z, 0.0), param);
    if (z < 0.0) return leak * z;
    if (z <= param) return leak * z + (1.0 - leak) * (z * z / (2.0 * param));
    return leak * z + (1.0 - leak) * (z - param / 2.0);
}

__device__ double dphi(double z, int act, double leak, double param) {
    if (act == 0) return z > 0.0 ? 1.0 : leak;
    if (act == 1) return z > 0.0 ? param * pow(fmax(z, 0.0), param - 1.0) : 0.0;
    if (z < 0.0) return leak;
    if (z <= param) return leak + (1.0 - leak) * (z / param);
    return 1.0;
}

template <typename T>
__device__ double row_output(const T* __restrict__ z, const double* __restrict__ a, int m,
                             double leak, int act, double param, double* shared) {
    if (blockDim.x != FG_THREADS) __trap();  // launched with another block size: stop loudly
    double s = 0.0;
    for (int j = threadIdx.x; j < m; j += blockDim.x) {
        s += phi((double)z[j], act, leak, param) * a[j];
    }
    shared[threadIdx.x] = s;
    __syncthreads();
    // Fixed-shape tree reduction: the same order on every launch, so results are reproducible.
    for (int stride = blockDim.x / 2; stride > 0; stride >>= 1) {
        if (threadIdx.x < stride) shared[threadIdx.x] += shared[threadIdx.x + stride];
        __syncthreads();
    }
    return shared[0];
}

template <typename T>
__device__ void coefficients(const T* __restrict__ Z, const double* __restrict__ y,
                             const double* __restrict__ a, double lr, int n_per_run, int m,
                             T* __restrict__ V, double* __restrict__ f, int accumulate,
                             double leak, int act, double param, int loss) {
    __shared__ double shared[FG_THREADS];
    const long row = blockIdx.x;
    const T* z = Z + row * m;
    const double* ar = a + (row / n_per_run) * m;
    double fi = row_output(z, ar, m, leak, act, param, shared);
    if (threadIdx.x == 0) f[row] = fi;
    double c = lr / n_per_run * loss_residual(y[row], fi, loss);
    T* v = V + row * m;
    for (int j = threadIdx.x; j < m; j += blockDim.x) {
        double val = c * ar[j] * dphi((double)z[j], act, leak, param);
        v[j] = (T)(accumulate ? (double)v[j] + val : val);
    }
}

template <typename T>
__device__ void outputs(const T* __restrict__ Z, const double* __restrict__ a, int n_per_run,
                        int m, double* __restrict__ f, double leak, int act, double param) {
    __shared__ double shared[FG_THREADS];
    const long row = blockIdx.x;
    double fi = row_output(Z + row * m, a + (row / n_per_run) * m, m, leak, act, param, shared);
    if (threadIdx.x == 0) f[row] = fi;
}

extern "C" {
__global__ void coefficients_f32(const float* Z, const double* y, const double* a, double lr,
                                 int n_per_run, int m, float* V, double* f, int accumulate,
                                 double leak, int act, double param, int loss) {
    coefficients<float>(Z, y, a, lr, n_per_run, m, V, f, accumulate, leak, act, param, loss);
}
__global__ void coefficients_f64(const double* Z, const double* y, const double* a, double lr,
                                 int n_per_run, int m, double* V, double* f, int accumulate,
                                 double leak, int act, double param, int loss) {
    coefficients<double>(Z, y, a, lr, n_per_run, m, V, f, accumulate, leak, act, param, loss);
}
__global__ void outputs_f32(const float* Z, const double* a, int n_per_run, int m, double* f,
                            double leak, int act, double param) {
    outputs<float>(Z, a, n_per_run, m, f, leak, act, param);
}
__global__ void outputs_f64(const double* Z, const double* a, int n_per_run, int m, double* f,
                            double leak, int act, double param) {
    outputs<double>(Z, a, n_per_run, m, f, leak, act, param);
}
}
