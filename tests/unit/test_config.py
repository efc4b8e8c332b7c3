"""Config loading and validation: every error names the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from analysis.config import load_config, resolve_config_path
from analysis.errors import ConfigError
from analysis.relax.histograms import resolve_bandwidth


def _write_variant(tmp_path: Path, edit, base: str = "tth_bb_tiny") -> Path:  # noqa: ANN001
    """The config ``base`` (``config/<base>.yaml``) after ``edit(raw dict)``, as a new file."""
    raw = yaml.safe_load(resolve_config_path(base).read_text())
    edit(raw)
    path = tmp_path / f"{base}_variant.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_demo_and_tiny_configs_load() -> None:
    demo, tiny = load_config("tth_bb"), load_config("tth_bb_tiny")
    assert demo.process_names == tiny.process_names == ("tth_bb", "tt_bb", "tt_b", "tt_cc", "tt_lf")
    assert demo.processes["tth_bb"].role == "signal"
    assert tiny.datasets["tth"].generator.n_events < demo.datasets["tth"].generator.n_events
    assert demo.label_of("tt_b") == 2
    assert len(demo.digest) == 64 and demo.digest != tiny.digest


def test_config_by_path_equals_by_name() -> None:
    by_path = load_config(str(resolve_config_path("tth_bb_tiny")))
    assert by_path == load_config("tth_bb_tiny")


@pytest.mark.parametrize(("edit", "key", "why"), [
    (lambda c: c["processes"]["tth_bb"].update(colour="red"), "processes.tth_bb.colour",
     "unknown key"),
    (lambda c: c["luminosity"].update(value="a lot"), "luminosity.value", "expected a number"),
    (lambda c: c["processes"]["tt_b"]["cross_section"].update(value=-1.0),
     "processes.tt_b.cross_section.value", "must be >= 0 pb"),
    (lambda c: c["datasets"]["tth"].update(processes=["tth_cc"]), "datasets.tth.processes[0]",
     "no such process"),
    (lambda c: c["objects"]["jets"].pop("pt_min"), "objects.jets.pt_min", "required key"),
    (lambda c: c["selection"].update(btag_working_point="extreme"),
     "selection.btag_working_point", "must be one of"),
    (lambda c: c["datasets"]["tth"]["generator"].update(n_events=2.5),
     "datasets.tth.generator.n_events", "expected an integer"),
    (lambda c: c["features"].update(event=["ht", "magic"]), "features.event", "unknown feature"),
    (lambda c: c["datasets"]["tth"]["generator"].update(replicas=0),
     "datasets.tth.generator.replicas", "must be >= 1"),
    (lambda c: c["detector"]["btag_b"].update(medium=0.95), "detector.btag_b",
     "1 > loose >= medium >= tight"),
    (lambda c: c["detector"]["btag_b"].update(loose=0.99), "detector.btag_b.loose",
     "must stay below 1"),
    (lambda c: c["objects"]["jets"].update(btag_medium=0.9), "objects.jets.btag_medium",
     "loose < medium < tight"),
    (lambda c: c["detector"].update(muon_efficiency=1.2), "detector.muon_efficiency", "<= 1"),
    (lambda c: c["processes"]["tt_b"].update(gen_ttbar_id=[51, 53]), "processes.tt_bb.gen_ttbar_id",
     "already belongs to process tt_b"),
    (lambda c: c["processes"]["tt_lf"].update(role="signal"), "processes", "exactly one"),
    (lambda c: c["training"].update(joint_cuts=["ce"]), "training.joint_cuts[0]",
     "must be one of inference, significance (the cross entropy normalises each class"),
    (lambda c: c["training"].update(seeds=0), "training.seeds", "must be >= 1"),
    (lambda c: c["training"].update(event_slices=0), "training.event_slices", "must be >= 1"),
    (lambda c: c["cuts"].update(min_signal_efficiency=1.0), "cuts.min_signal_efficiency",
     "must be below 1"),
    (lambda c: c["training"].update(seeds=1.5), "training.seeds", "expected an integer"),
    (lambda c: c["training"].update(n_folds=1), "training.n_folds", "must be >= 2"),
    (lambda c: c["training"].update(bandwidth=0.0), "training.bandwidth", "must be > 0"),
    (lambda c: c["training"].update(bandwidth="wide"), "training.bandwidth", "expected a number"),
    (lambda c: c["training"].update(bandwidth=float("nan")), "training.bandwidth",
     "must be a finite number > 0"),
    (lambda c: c["training"].update(n_bins=10, bandwidth=0.1000001), "training.bandwidth",
     "wider than a score bin (1 / training.n_bins = 0.1)"),
])
def test_invalid_config_names_file_and_key(tmp_path: Path, edit, key: str, why: str) -> None:  # noqa: ANN001
    path = _write_variant(tmp_path, edit)
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    message = str(info.value)
    assert message.startswith(f"{path}: {key} = ") and why in message
    assert message.count("\n") == 0


def test_omitted_bandwidth_is_none_and_trains_with_a_fifth_of_the_bin(tmp_path: Path) -> None:
    path = _write_variant(tmp_path, lambda c: (c["training"].pop("bandwidth"),
                                               c["training"].update(n_bins=5)))
    training = load_config(str(path)).training
    assert training.bandwidth is None
    edges = [i / training.n_bins for i in range(training.n_bins + 1)]
    assert resolve_bandwidth(training.bandwidth, edges) == pytest.approx(0.04, rel=1e-12)
    one_bin = _write_variant(tmp_path, lambda c: c["training"].update(n_bins=5, bandwidth=0.2))
    assert load_config(str(one_bin)).training.bandwidth == 0.2  # one bin width: allowed


def test_unknown_config_name_lists_known_ones() -> None:
    with pytest.raises(ConfigError, match="tth_bb_tiny"):
        load_config("no_such_analysis")


def test_external_dataset_config_points_at_real_file(cms_file: Path) -> None:
    config = load_config("cms_tt")
    (relative,) = config.datasets["cms_tt"].files
    assert (Path(config.source).parent / relative).resolve() == cms_file.resolve()


def test_fit_systematics_are_the_skims_variations_and_unknown_ones_fail(tmp_path: Path) -> None:
    from analysis.config import FIT_SYSTEMATICS, OBJECT_SHIFTS
    from analysis.inference.score_histograms import VARIATIONS

    # the histograms' variations and the skim's tables come from the one list of systematics
    assert VARIATIONS[1:] == tuple(f"{s}_{d}" for s in FIT_SYSTEMATICS for d in ("up", "down"))
    assert OBJECT_SHIFTS == ("nominal", "jes_up", "jes_down", "jer_up", "jer_down")
    text = resolve_config_path("tth_bb_tiny").read_text().replace(
        "  n_bins: 3\n", "  n_bins: 3\n  systematics: [jes, pdf]\n", 1)
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"inference.systematics.*unknown systematic"):
        load_config(str(path))


def _all_hadronic(raw: dict, features: list[str]) -> None:
    raw["selection"]["n_tight_leptons"] = 0
    raw["features"]["event"] = features


@pytest.mark.parametrize(("edit", "key", "why"), [
    (lambda c: _all_hadronic(c, ["ht", "lepton_pt"]), "features.event = \"lepton_pt\"",
     "needs 1 tight lepton in every selected event, but selection.n_tight_leptons = 0"),
    (lambda c: _all_hadronic(c, ["mt_w"]), "features.event = \"mt_w\"",
     "selection.n_tight_leptons = 0: remove it, or select more leptons"),
    (lambda c: c["features"].update(event=["ht", "mll"]), "features.event = \"mll\"",
     "needs 2 tight leptons in every selected event, but selection.n_tight_leptons = 1"),
    (lambda c: c.update(nanoaod={"version": "v15", "met": "MET"}), "nanoaod.met = \"MET\"",
     "NanoAOD v15 has no MET_pt; choose one of PFMET, PuppiMET"),
    (lambda c: c.update(nanoaod={"version": "v12", "btag": "Jet_btagUParTAK4B"}),
     "nanoaod.btag = \"Jet_btagUParTAK4B\"", "not a b-tag discriminant of NanoAOD v12 (known: "
     "Jet_btagDeepFlavB, Jet_btagPNetB, Jet_btagRobustParTAK4B)"),
    (lambda c: c.update(nanoaod={"version": "v13"}), "nanoaod.version = \"v13\"",
     "must be one of v9, v12, v15"),
    (lambda c: (_all_hadronic(c, ["ht"]), c.update(training={"models": ["dnn", "gnn"]})),
     "training.models = [\"dnn\", \"gnn\"]", "the GNN's graph has a lepton node, but "
     "selection.n_tight_leptons = 0: train only dnn, or select a lepton"),
    (lambda c: c.setdefault("inference", {}).update(fit_engine="minuit"), "inference.fit_engine = \"minuit\"",
     "must be 'torch' (the torch fitter) or 'pyhf' (pyhf + MINUIT)"),
])
def test_invalid_nanoaod_and_lepton_settings(tmp_path: Path, edit, key: str, why: str) -> None:  # noqa: ANN001
    path = _write_variant(tmp_path, edit, base="cms_tt")  # an external dataset
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert str(info.value).startswith(f"{path}: {key}: {why}") or (
        str(info.value).startswith(f"{path}: {key}") and why in str(info.value)), str(info.value)


def test_generated_events_are_v12_and_their_configs_say_so(tmp_path: Path) -> None:
    for name in ("tth_bb", "tth_bb_tiny"):
        nanoaod = load_config(name).nanoaod
        assert (nanoaod.version, nanoaod.met, nanoaod.btag) == ("v12", "MET", "Jet_btagDeepFlavB")
        assert "nanoaod:\n  version: v12" in resolve_config_path(name).read_text()
    path = _write_variant(tmp_path, lambda c: c.update(nanoaod={"version": "v15",
                                                                "met": "PuppiMET"}))
    with pytest.raises(ConfigError, match=r"nanoaod = .*dataset \w+ is generated, and generated "
                                          r"events are written as NanoAOD .*'version': 'v12'"):
        load_config(str(path))


def test_all_hadronic_example_loads_without_lepton_features() -> None:
    from analysis.config import LEPTON_FEATURES

    config = load_config("cms_tt_allhad_v15")
    assert config.selection.n_tight_leptons == 0
    assert not set(config.features.event) & set(LEPTON_FEATURES)
    assert (config.nanoaod.version, config.nanoaod.btag) == ("v15", "Jet_btagUParTAK4B")
