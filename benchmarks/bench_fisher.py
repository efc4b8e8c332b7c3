"""Cost of the inference-aware loss: the Fisher information as J^T diag(1/lambda) J against the
autograd Hessian it replaced, on the demo's statistical model.

Usage: python benchmarks/bench_fisher.py [--repeats 20]

The model is the demo config's (``config/tth_bb.yaml``: three categories, a free tt+bb
normalisation, normsys, histosys and staterror) built by ``build_model`` from demo-shaped
histograms (:func:`analysis.validation.demo_histograms.demo_like_categories`) whose nominal
templates are leaves with gradients, as in training. One "step" is what each training step of
the inference-aware loss does: sigma_mu from the inverse Fisher information, then its backward
pass to the templates. Both ways are timed in this process, one after the other, with one
torch thread; the table gives the time per step (fastest of ``--repeats``), the ratio, and
how far the two sigma_mu and their gradients lie apart.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.config import load_config  # noqa: E402
from analysis.inference.model import build_model, model_spec  # noqa: E402
from analysis.inference.score_histograms import templates_from_histograms  # noqa: E402
from analysis.relax import likelihood  # noqa: E402
from analysis.validation.demo_histograms import demo_like_categories  # noqa: E402


def autograd_fisher(model, pars=None, create_graph=True):  # type: ignore[no-untyped-def]
    """The previous implementation: the autograd Hessian of the NLL on Asimov data."""
    pars = likelihood.nominal_parameters(model) if pars is None else pars
    data = likelihood.asimov_data(model, pars)
    return torch.autograd.functional.hessian(
        lambda p: likelihood.nll(model, p, data), pars, create_graph=create_graph,
        vectorize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        config = load_config("tth_bb")
        templates = templates_from_histograms(demo_like_categories(config)["channels"])
        spec = model_spec(config)
        leaves = {(c, p): per["nominal"][0].clone().requires_grad_(True)
                  for c, processes in templates.items() for p, per in processes.items()}
        results = {}
        for name, fisher in (("autograd Hessian", autograd_fisher),
                             ("J^T diag(1/lambda) J", likelihood.fisher_information)):
            best = float("inf")
            for _ in range(args.repeats):
                model = build_model(_with_leaves(templates, leaves), spec)
                start = time.perf_counter()
                information = fisher(model)
                index = model.parameter(model.poi).index.start
                sigma = torch.linalg.inv(information)[index, index].sqrt()
                grads = torch.autograd.grad(sigma, list(leaves.values()))
                best = min(best, time.perf_counter() - start)
            results[name] = (best, float(sigma.detach()), torch.cat([g.reshape(-1) for g in grads]))
    finally:
        torch.set_num_threads(previous_threads)
    (old_t, old_s, old_g), (new_t, new_s, new_g) = results.values()
    n_parameters = build_model(_with_leaves(templates, leaves), spec).n_parameters
    print("| Fisher information | time per step (ms) | sigma_mu | parameters |")
    print("|---|---|---|---|")
    for name, (seconds, sigma, _) in results.items():
        print(f"| {name} | {1e3 * seconds:.1f} | {sigma:.6f} | {n_parameters} |")
    print(f"\nratio {old_t / new_t:.1f}x; sigma_mu rel. diff. {abs(new_s / old_s - 1):.1e}; "
          f"gradient max rel. diff. "
          f"{float((new_g - old_g).abs().max() / old_g.abs().max()):.1e}")


def _with_leaves(templates, leaves):  # type: ignore[no-untyped-def]
    """``templates`` with every (channel, process) nominal replaced by its leaf tensor."""
    return {c: {p: {v: ((leaves[c, p], values[1]) if v == "nominal" else values)
                    for v, values in per.items()}
                for p, per in processes.items()}
            for c, processes in templates.items()}


if __name__ == "__main__":
    main()
