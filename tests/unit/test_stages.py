"""analysis.stages: what each stage reads of the config, and the tag of its outputs."""

import dataclasses

import pytest

from analysis.config import Categories, OutputClass
from analysis.errors import ConfigError
from analysis.stages import (
    CLASS_SECTIONS,
    INFERENCE_SECTIONS,
    SKIM_SECTIONS,
    TRAINING_SECTIONS,
    config_tag,
    section_content,
)


def _with_uncertainty(config, process: str, uncertainty: float):
    spec = config.processes[process]
    processes = {**config.processes, process: dataclasses.replace(
        spec, cross_section=dataclasses.replace(spec.cross_section, uncertainty=uncertainty))}
    return dataclasses.replace(config, processes=processes)


def test_an_uncertainty_reruns_training_but_not_the_skim(tiny_config) -> None:
    process = next(iter(tiny_config.processes))
    changed = _with_uncertainty(tiny_config, process, 0.37)
    assert config_tag(changed, SKIM_SECTIONS) == config_tag(tiny_config, SKIM_SECTIONS)
    assert config_tag(changed, TRAINING_SECTIONS) != config_tag(tiny_config, TRAINING_SECTIONS)
    # order and repetition of the entries do not matter; the form is cfg-<8 hex>
    tag = config_tag(tiny_config, INFERENCE_SECTIONS)
    assert tag == config_tag(tiny_config, (*reversed(INFERENCE_SECTIONS), "inference"))
    assert tag.startswith("cfg-") and len(tag) == 12


def test_the_classes_rerun_the_learned_skim_and_training_but_not_the_skim(tiny_config) -> None:
    regrouped = dataclasses.replace(tiny_config, classes=(
        *tiny_config.classes[:1], OutputClass("ttb", ("tt_bb", "tt_b")),
        OutputClass("ttother", ("tt_cc", "tt_lf"))))
    assert config_tag(regrouped, SKIM_SECTIONS) == config_tag(tiny_config, SKIM_SECTIONS)
    for sections in ((*SKIM_SECTIONS, *CLASS_SECTIONS), TRAINING_SECTIONS):
        assert config_tag(regrouped, sections) != config_tag(tiny_config, sections)


def test_the_statistical_model_reruns_training_but_the_fit_settings_do_not(tiny_config) -> None:
    """The yield-aware losses are built from inference's model (categories, bins, modifiers):
    a b-tag split must retrain them; a fit setting (the scan) must not."""
    def inference(**changes):
        return dataclasses.replace(tiny_config, inference=dataclasses.replace(
            tiny_config.inference, **changes))
    split = inference(categories=Categories(btag_split=(3, 4)))
    scan = inference(scan_points=tiny_config.inference.scan_points + 2)
    assert config_tag(split, TRAINING_SECTIONS) != config_tag(tiny_config, TRAINING_SECTIONS)
    assert config_tag(scan, TRAINING_SECTIONS) == config_tag(tiny_config, TRAINING_SECTIONS)
    assert config_tag(scan, INFERENCE_SECTIONS) != config_tag(tiny_config, INFERENCE_SECTIONS)
    assert section_content(split, "inference:model")["categories"]["btag_split"] == (3, 4)


def test_unknown_section_part_is_a_config_error(tiny_config) -> None:
    with pytest.raises(ConfigError, match="processes:colour"):
        section_content(tiny_config, "processes:colour")
