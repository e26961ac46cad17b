"""Quick start: seed 000's regular model sampled by NUTS, ConstantSGD, SGLD and SGHMC.

The SGLD and SGHMC steps are given only a batch size: the warm-up chooses the rest.

Prints posterior means and SDs of (a, sigma) next to the exact grid posterior, and saves
a figure in the style of seed 000's Figure 1 (orange sampler density over blue exact
contours) to examples/outputs/quickstart.png. Run with `make demo`.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pymc as pm  # noqa: E402

import pymc_sgd  # noqa: E402
from pymc_sgd import models  # noqa: E402
from pymc_sgd.compare import plot_density_over_contours  # noqa: E402

OUTPUT = Path(__file__).parent / "outputs" / "quickstart.png"
N, B = 200, 10


def main() -> None:
    model = models.seed000_regular_model()
    samplers = {
        "NUTS": None,
        "ConstantSGD (preconditioned)": pymc_sgd.ConstantSGD(batch_size=B, model=model),
        "ConstantSGD (exact P)": pymc_sgd.ConstantSGD(batch_size=B, preconditioner="exact", model=model),
        "ConstantSGD (eta = 2B/n)": pymc_sgd.ConstantSGD(batch_size=B, preconditioner=None, model=model),
        "SGLD (defaults)": pymc_sgd.SGLD(batch_size=B, model=model),
        "SGHMC (defaults)": pymc_sgd.SGHMC(batch_size=B, model=model),
    }
    traces = {}
    with model:
        for name, step in samplers.items():
            idata = pm.sample(draws=2000, tune=500, chains=2, step=step, random_seed=42, progressbar=False,
                              compute_convergence_checks=False)
            traces[name] = {v: idata.posterior[v].values.ravel() for v in ("a", "sigma")}
            if name.endswith("(defaults)"):
                print(f"\n{name}: what the warm-up chose\n{pymc_sgd.tuning_report(idata).to_string()}")

    exact = models.seed000_regular_grid_posterior()
    print(f"\nSeed 000 regular model, n = {N}, B = {B}: posterior mean (SD)")
    print(f"{'sampler':32s} {'a':>18s} {'sigma':>18s}   SD ratio a, sigma")
    print(f"{'exact (grid)':32s} " + " ".join(f"{exact[v]['mean']:8.4f} ({exact[v]['sd']:.4f})" for v in ("a", "sigma")))
    for name, draws in traces.items():
        cells = " ".join(f"{draws[v].mean():8.4f} ({draws[v].std():.4f})" for v in ("a", "sigma"))
        ratios = ", ".join(f"{draws[v].std() / exact[v]['sd']:.2f}" for v in ("a", "sigma"))
        print(f"{name:32s} {cells}   {ratios}")
    print("(eta = 2B/n without preconditioning inflates the SDs by ~1.08 and ~1.46: docs/pages/sources.md on seed 000;"
          " the warm-up keeps SGLD's and SGHMC's predicted SD error below 3%.)")
    plot(traces)
    print(f"\nFigure saved to {OUTPUT}")


def plot(traces: dict[str, dict[str, np.ndarray]]) -> None:
    a, sigma, weights = models.seed000_regular_grid()
    window = (a >= -0.3) & (a <= 0.2), (sigma >= 0.75) & (sigma <= 1.15)
    fig, axes = plt.subplots(1, len(traces), figsize=(4 * len(traces), 4), sharey=True)
    for ax, (name, draws) in zip(axes, traces.items()):
        plot_density_over_contours(ax, draws["a"], draws["sigma"], a[window[0]], sigma[window[1]],
                                   weights[np.ix_(window[1], window[0])], title=name)
        ax.set_xlabel("a")
    axes[0].set_ylabel("sigma")
    fig.suptitle("Sampler density (orange) vs exact posterior (blue contours)")
    fig.tight_layout()
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUTPUT, dpi=100)


if __name__ == "__main__":
    main()
