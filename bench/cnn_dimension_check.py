"""The cnn study's check across d (docs/studies.md): test accuracy against n ||mu||^4 / (sigma_p^4 d).

The preset kou2023-relu-cnn with lr scaled as 1/d and omega_init as 1/sqrt(d), at matched
values of the theory's variable, for d = 10^4, 10^6, 10^8 and n = 10, 160.
"""
import time

import fastgrok as fg

t0 = time.time()
for d in (10_000, 1_000_000, 100_000_000):
    for n in (10, 160):
        row = []
        for v in (0.1, 1.0, 10.0):
            mu = (v * d / n) ** 0.25
            cfg = fg.preset("kou2023-relu-cnn", n=n, p=d, mu_norm=float(mu), lr=2e-5 * 1e6 / d,
                            init_scale=1e-6 * (1e6 / d) ** 0.5, runs=10, snapshot_steps=())
            s = fg.run(cfg, progress=False).summary().iloc[-1]
            row.append(f"{s.test_acc_median:.3f}")
        print(f"d={d:g} n={n}: test acc at n||mu||^4/(sigma^4 d) = 0.1, 1, 10:", row, flush=True)
print(f"{time.time() - t0:.1f} s")
