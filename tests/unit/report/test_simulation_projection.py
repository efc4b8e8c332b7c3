"""The simulation that sigma_mu <= 1 needs, projected from the fit's MC statistical part."""

from __future__ import annotations

import math

import pytest

from analysis.report.projection import (
    GenerationCost,
    generation_cost,
    project_simulation,
    projection_sentence,
)


@pytest.mark.parametrize(("total", "floor"), [(5.0, 0.6), (28.0, 0.2), (1.3, 0.9)])
def test_the_projected_sample_reaches_the_target(total: float, floor: float) -> None:
    """k times the events shrink the MC variance k times: at the projected k the quadrature sum
    of the floor and the scaled MC part is the target."""
    p = project_simulation(total, floor, target=1.0, generation_cpu_seconds=7200.0)
    mc_variance = total**2 - floor**2
    assert math.sqrt(floor**2 + mc_variance / p.factor) == pytest.approx(1.0, rel=1e-12)
    assert p.cpu_hours == pytest.approx(2.0 * p.factor, rel=1e-12)
    assert p.sigma_mc == pytest.approx(math.sqrt(mc_variance), rel=1e-12)


def test_reached_out_of_reach_and_undetermined() -> None:
    assert project_simulation(0.8, 0.5).factor == 1.0
    unreachable = project_simulation(3.0, 1.2)
    assert math.isinf(unreachable.factor)
    assert "out of reach" in unreachable.sentence()
    assert math.isnan(project_simulation(math.nan, 0.5).factor)
    with pytest.raises(ValueError, match="target"):
        project_simulation(3.0, 1.0, target=0.0)


def test_the_reports_sentence_uses_the_best_network_and_this_runs_cost() -> None:
    summary = {"a": {"sigma_mu": 4.0, "sigma_mu_no_mcstat": 0.5},
               "b": {"sigma_mu": 2.0, "sigma_mu_no_mcstat": 0.6},
               "c": {"sigma_mu": math.nan, "sigma_mu_no_mcstat": 0.1}}
    cost = generation_cost([{"events": 1000, "cpu_seconds": 1800.0},
                            {"events": 500, "cpu_seconds": 1800.0}])
    assert cost == GenerationCost(1500, 3600.0)
    factor = (2.0**2 - 0.6**2) / (1.0 - 0.6**2)  # network b: 5.69
    text = projection_sentence(summary, cost)
    assert f"{factor:.3g}×" in text and f"{factor * 1500:.3g} generated events" in text
    assert f"{factor:.3g} CPU-hours" in text
    other = (4.0**2 - 0.5**2) / (1.0 - 0.5**2)  # network a: 21.0
    assert text.endswith(f"Projected from each other network instead: {other:.3g}–"
                         f"{other:.3g}× (1).")
    no_floor = {"sigma_mu": 5.0, "sigma_mu_no_mcstat": math.nan}  # a fit without its floor
    alone = projection_sentence({"b": summary["b"], "e": no_floor}, cost)
    assert alone.endswith("1/N.")  # no other network with a projection: nothing added
    summary["d"] = {"sigma_mu": 3.0, "sigma_mu_no_mcstat": 1.2}  # its floor is above 1
    assert projection_sentence(summary, cost).endswith(
        f"{other:.3g}–{other:.3g}× (1); out of reach for 1 (σ_μ without MC stat. ≥ 1).")
    assert "not projected" in projection_sentence({"c": summary["c"]}, cost)
