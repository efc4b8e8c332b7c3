"""What each generation lever buys per CPU-second: events/CPU-s and effective tt+bb statistics.

Usage: flock /tmp/diffana-heavy.lock python benchmarks/bench_mc_levers.py [--n-bb 250]
       [--n-rest 300] [--n-tth 200] [--n-variant 150] [--replicas 1,4,16] [--out FILE.json]

One process, CPU time (``time.process_time``) per stage:

1. Pythia, tt (l+jets): every parton-level try is timed, with its number of extra b quarks
   (pt > 15 GeV, |eta| < 2.6) and whether a prompt lepton has pt > 25 GeV and |eta| < 2.5 at
   parton level (the acceptance pre-filter; the skim asks for 29/30 GeV and 2.4). Events with >= 1
   extra b are hadronised (today's ``tt_extra_b``); a ``>= 2`` filter or the acceptance
   pre-filter keep a subset of the same tries, so their yield and cost come from the same run.
   The complement (0 extra b, ``tt_rest``) and ttH are generated the same way.
2. Pythia settings that cost time: the complement sample again with each variant.
3. Detector response with K replicas (``build_nanoaod``) and the real skim (``run_skim``) of the
   demo config, for each K; the selected tables give, per class and category, the effective
   number of simulated events with replicas counted as correlated
   (``analysis.inference.mcstat.effective_event_count``).

Prints Markdown tables and writes the numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

LEPTON_PT_MIN, LEPTON_ABS_ETA_MAX = 25.0, 2.5  # GeV; the acceptance pre-filter at parton level
VARIANTS = {
    "baseline": (),
    "MPI off": ("PartonLevel:MPI = off",),
    "no PS weights": ("UncertaintyBands:doVariations = off",),
    "limitTau0 (cτ < 10 mm)": ("ParticleDecays:limitTau0 = on", "ParticleDecays:tau0Max = 10"),
    "QED shower off": ("TimeShower:QEDshowerByQ = off", "TimeShower:QEDshowerByL = off",
                       "SpaceShower:QEDshowerByQ = off", "SpaceShower:QEDshowerByL = off"),
}


def _lepton_in_acceptance(event) -> bool:  # noqa: ANN001 (pythia8mc.Event)
    from analysis.events.pythia import _is_prompt

    for index in range(event.size()):
        particle = event[index]
        if (particle.isFinal() and particle.idAbs() in (11, 13) and particle.pT() > LEPTON_PT_MIN
                and abs(particle.eta()) < LEPTON_ABS_ETA_MAX and _is_prompt(event, index)):
            return True
    return False


def generate(process: str, n_events: int, seed: int, keep: str, extra: tuple[str, ...] = ()
             ) -> dict:
    """Instrumented copy of ``generate_hadron_level``: CPU time per try and per hadronisation.

    ``keep``: "extra_b" (>= 1 extra b quark), "no_extra_b" (the complement) or "all".
    """
    import pythia8mc

    from analysis.config import GeneratorSettings
    from analysis.events import truth
    from analysis.events.pythia import (
        HadronLevelEvents,
        _extract,
        _ps_weight_indices,
        pythia_settings,
    )

    settings = GeneratorSettings(process, n_events, n_events, seed, pythia=extra)
    pythia = pythia8mc.Pythia("", False)
    for line in pythia_settings(settings, 13600.0, seed):
        if not pythia.readString(line):
            raise RuntimeError(line)
    init_start = time.process_time()
    pythia.init()
    out = HadronLevelEvents()
    record = {"n_extra_b": [], "lepton_accepted": [], "t_init": time.process_time() - init_start}
    t_try = t_check = t_hadron = 0.0
    n_tried = n_extra1 = n_extra2 = n_acc = n_acc_extra1 = 0
    weight_index: list[int] = []
    while out.n_accepted < n_events:
        start = time.process_time()
        ok = pythia.next()
        t_try += time.process_time() - start
        if not ok:
            continue
        start = time.process_time()
        n_extra = truth.extra_b_quark_count(pythia.event, 15.0, 2.6)
        accepted = _lepton_in_acceptance(pythia.event)
        t_check += time.process_time() - start
        n_tried += 1
        n_extra1 += n_extra >= 1
        n_extra2 += n_extra >= 2
        n_acc += accepted
        n_acc_extra1 += accepted and n_extra >= 1
        if (keep == "extra_b" and n_extra < 1) or (keep == "no_extra_b" and n_extra >= 1):
            continue
        start = time.process_time()
        if not pythia.forceHadronLevel(False):
            t_hadron += time.process_time() - start
            continue
        info = pythia.infoPython()
        if not weight_index and info.nWeights() > 1:
            weight_index = _ps_weight_indices(info)
        ps = (np.array([info.weight(i) for i in weight_index]) / info.weight(0) if weight_index
              else np.ones(4))
        particles, leptons = _extract(pythia.event)
        t_hadron += time.process_time() - start
        out.particles.append(particles)
        out.leptons.append(leptons)
        out.ps_weights.append(ps)
        out.n_accepted += 1
        record["n_extra_b"].append(n_extra)
        record["lepton_accepted"].append(accepted)
    out.n_tried = n_tried
    out.n_passed = out.n_accepted
    record.update(events=out, n_tried=n_tried, t_try=t_try, t_check=t_check, t_hadron=t_hadron,
                  eff_extra1=n_extra1 / n_tried, eff_extra2=n_extra2 / n_tried,
                  eff_lepton=n_acc / n_tried, eff_lepton_extra1=n_acc_extra1 / max(n_extra1, 1))
    return record


def _runs(events, tried: int, passed: int) -> dict:  # noqa: ANN001
    return {"genEventCount": events.n_accepted, "genEventSumw": float(events.n_accepted),
            "genFilterTried": tried, "genFilterPassed": passed, "pythiaSigmaGen_pb": 0.0,
            "seed": 1}


def detector_and_skim(config, samples: dict, replicas: int, workdir: Path) -> dict:  # noqa: ANN001
    """Detector response with ``replicas`` per event, NanoAOD files, and the demo's skim."""
    from analysis.events.generate import detector_rngs
    from analysis.events.nanoaod import build_nanoaod, write_nanoaod
    from analysis.skim.processor import run_skim

    files, times = {}, {}
    for name, sample in samples.items():
        start = time.process_time()
        branches = build_nanoaod(sample["events"], config.detector, config.objects.jets,
                                 detector_rngs(1000 + len(name), replicas), 1, 1)
        times[name] = {"detector": time.process_time() - start}
        path = workdir / f"{name}_k{replicas}.root"
        tried = sample["n_tried"]
        passed = round(tried * (sample["eff_extra1"] if name != "tt_rest" else
                                1 - sample["eff_extra1"])) if name != "tth" else tried
        write_nanoaod(path, branches, _runs(sample["events"], tried, passed))
        files[name] = path
    tables = {}
    for name in samples:
        complement = {"tt_extra_b": ["tt_rest"], "tt_rest": ["tt_extra_b"]}.get(name, [])
        start = time.process_time()
        result = run_skim(config, name, [str(files[name])],
                          complement_files=[str(files[c]) for c in complement])
        times[name]["skim"] = time.process_time() - start
        tables[name] = {k: np.asarray(result.tables["nominal"][k])
                        for k in ("event", "label", "weight", "n_jets", "n_btag")}
    return {"times": times, "tables": tables}


CATEGORIES = {
    "demo selection (1 l, >= 4 j, >= 2 loose b)": lambda t: np.ones(len(t["event"]), bool),
    ">= 4 j, >= 3 medium b": lambda t: (t["n_jets"] >= 4) & (t["n_btag"] >= 3),
    ">= 4 j, >= 4 medium b": lambda t: (t["n_jets"] >= 4) & (t["n_btag"] >= 4),
}


def effective(table: dict, chosen: np.ndarray) -> float:
    from analysis.inference.mcstat import effective_event_count

    return effective_event_count(table["weight"][chosen], table["event"][chosen])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-bb", type=int, default=250)
    parser.add_argument("--n-rest", type=int, default=300)
    parser.add_argument("--n-tth", type=int, default=200)
    parser.add_argument("--n-variant", type=int, default=150)
    parser.add_argument("--replicas", default="1,4,16")
    parser.add_argument("--out", default="bench_mc_levers.json")
    args = parser.parse_args()
    from analysis.config import load_config

    config = load_config("tth_bb")
    labels = {name: config.label_of(name) for name in config.process_names}
    samples = {
        "tth": generate("tth_bb", args.n_tth, 11, "all"),
        "tt_extra_b": generate("ttbar_ljets", args.n_bb, 21, "extra_b"),
        "tt_rest": generate("ttbar_ljets", args.n_rest, 31, "no_extra_b"),
    }
    result: dict = {"pythia": {}, "variants": {}, "replicas": {}}
    print("\n## Pythia (CPU-s)\n\n| sample | tried | kept | t/try ms | t/hadronisation ms | "
          "eff >=1 b | eff >=2 b | eff lepton acc. | kept events/CPU-s |\n|---|---|---|---|---|---|---|---|---|")
    for name, s in samples.items():
        n = s["events"].n_accepted
        total = s["t_try"] + s["t_check"] + s["t_hadron"]
        row = {"tried": s["n_tried"], "kept": n, "t_try": s["t_try"] / s["n_tried"],
               "t_check": s["t_check"] / s["n_tried"], "t_hadron": s["t_hadron"] / n,
               "eff_extra1": s["eff_extra1"], "eff_extra2": s["eff_extra2"],
               "eff_lepton": s["eff_lepton"], "eff_lepton_extra1": s["eff_lepton_extra1"],
               "n_extra_b": s["n_extra_b"], "lepton_accepted": s["lepton_accepted"],
               "events_per_cpu_s": n / total, "t_total": total}
        result["pythia"][name] = row
        print(f"| {name} | {s['n_tried']} | {n} | {1e3 * row['t_try']:.2f} | "
              f"{1e3 * row['t_hadron']:.1f} | {s['eff_extra1']:.4f} | {s['eff_extra2']:.4f} | "
              f"{s['eff_lepton']:.3f} | {row['events_per_cpu_s']:.2f} |")
    print("\n## Pythia settings (tt complement sample, CPU-s)\n\n| variant | t/try ms | "
          "t/hadronisation ms | kept events/CPU-s | mean jets pt>30 | ratio to baseline |\n|---|---|---|---|---|---|")
    base_rate = None
    for variant, extra in VARIANTS.items():
        s = generate("ttbar_ljets", args.n_variant, 41, "no_extra_b", extra)
        n = s["events"].n_accepted
        rate = n / (s["t_try"] + s["t_hadron"])
        base_rate = base_rate or rate
        from analysis.events.detector import cluster_generator_jets
        jets = cluster_generator_jets(s["events"].particles)
        mean_jets = float(np.mean([np.sum(np.asarray(j.pt) > 30) for j in jets]))
        result["variants"][variant] = {"t_try": s["t_try"] / s["n_tried"],
                                       "t_hadron": s["t_hadron"] / n, "rate": rate,
                                       "mean_jets": mean_jets}
        print(f"| {variant} | {1e3 * s['t_try'] / s['n_tried']:.2f} | "
              f"{1e3 * s['t_hadron'] / n:.1f} | {rate:.2f} | {mean_jets:.2f} | "
              f"{rate / base_rate:.2f} |")
    with tempfile.TemporaryDirectory() as tmp:
        for k in (int(x) for x in args.replicas.split(",")):
            out = detector_and_skim(config, samples, k, Path(tmp))
            entry: dict = {"times": out["times"], "categories": {}}
            for name, table in out["tables"].items():
                n_extra = np.asarray(samples[name]["n_extra_b"])[table["event"].astype(int) - 1]
                lepton = np.asarray(samples[name]["lepton_accepted"])[
                    table["event"].astype(int) - 1]
                for category, select in CATEGORIES.items():
                    for process, label in labels.items():
                        chosen = select(table) & (table["label"] == label)
                        if not chosen.any():
                            continue
                        entry["categories"].setdefault(name, {}).setdefault(category, {})[
                            process] = {
                            "rows": int(chosen.sum()),
                            "events": int(len(np.unique(table["event"][chosen]))),
                            "n_eff": effective(table, chosen),
                            "n_eff_kish_rows": float(table["weight"][chosen].sum() ** 2
                                                     / np.sum(table["weight"][chosen] ** 2)),
                            "n_eff_extra2": effective(table, chosen & (n_extra >= 2)),
                            "n_eff_lepton_acc": effective(table, chosen & lepton),
                            "yield": float(table["weight"][chosen].sum()),
                        }
            result["replicas"][k] = entry
    print("\n## Detector replicas and skim (CPU-s per hadronised event)\n\n| K | sample | "
          "detector ms/event | skim ms/event |\n|---|---|---|---|")
    for k, entry in result["replicas"].items():
        for name, t in entry["times"].items():
            n = samples[name]["events"].n_accepted
            print(f"| {k} | {name} | {1e3 * t['detector'] / n:.1f} | {1e3 * t['skim'] / n:.1f} |")
    print("\n## Effective simulated events after the selection (replicas correlated)\n\n| K | "
          "sample | category | process | events | rows | N_eff | N_eff (Kish on rows) | "
          "N_eff if >=2 b filter | N_eff if lepton pre-filter |\n|---|---|---|---|---|---|---|---|---|---|")
    for k, entry in result["replicas"].items():
        for name, categories in entry["categories"].items():
            for category, processes in categories.items():
                for process, c in processes.items():
                    if process not in ("tth_bb", "tt_bb", "tt_lf", "tt_b"):
                        continue
                    print(f"| {k} | {name} | {category} | {process} | {c['events']} | "
                          f"{c['rows']} | {c['n_eff']:.1f} | {c['n_eff_kish_rows']:.1f} | "
                          f"{c['n_eff_extra2']:.1f} | {c['n_eff_lepton_acc']:.1f} |")
    for sample in samples.values():
        sample.pop("events")
    Path(args.out).write_text(json.dumps(result, indent=1, default=float))


if __name__ == "__main__":
    main()
