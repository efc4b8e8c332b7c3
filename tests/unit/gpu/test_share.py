"""GPU shares: parsing, errors, and the HTCondor, Slurm and local translations."""

from __future__ import annotations

import pytest

from analysis.errors import ConfigError, ResourceError
from analysis.gpu.share import (
    GpuShare,
    HTCondorSite,
    htcondor_submit_lines,
    local_environment,
    luigi_gpu_slots,
    slurm_options,
)

htcondor2 = pytest.importorskip("htcondor2")

H100_GB = 80
SITE = HTCondorSite(accounting_group="cms.higgs",
                    requirements='(TARGET.OpSysAndVer == "AlmaLinux9")',
                    extra_lines=(("universe", "vanilla"), ("+SingularityImage", '"/cvmfs/img"')))

# spec -> (request_gpus, device MB, share attribute, thread %, MPS memory limit, slurm gres)
CASES = {
    "0.1": ("1", "8192", "0.1", "10", "0=8G", "--gres=mps:10"),
    "0.25": ("1", "20480", "0.25", "25", "0=20G", "--gres=mps:25"),
    "0.5": ("1", "40960", "0.5", "50", "0=40G", "--gres=mps:50"),
    "1": ("1", "81920", "1", None, None, "--gres=gpu:1"),
    "2": ("2", "81920", "2", None, None, "--gres=gpu:2"),
}


def share_of(spec: str) -> GpuShare:
    return GpuShare.parse(spec, cpus=4, host_memory_gb=12, runtime_minutes=90,
                          card_memory_gb=H100_GB)


def submit_description(lines: dict[str, str]) -> str:
    body = "\n".join(f"{key} = {value}" for key, value in lines.items())
    return f"executable = /bin/true\n{body}\nqueue\n"


@pytest.mark.parametrize("spec", list(CASES))
def test_htcondor_submit_description_parses(spec: str) -> None:
    gpus, memory_mb, attribute, percent, mem_limit, _ = CASES[spec]
    submit = htcondor2.Submit(submit_description(htcondor_submit_lines(share_of(spec), SITE)))
    assert submit["executable"] == "/bin/true"
    assert submit["request_gpus"] == gpus
    assert submit["gpus_minimum_memory"] == memory_mb
    assert submit["request_cpus"] == "4"
    assert submit["request_memory"] == str(12 * 1024)
    assert submit["MY.MaxRuntime"] == str(90 * 60)
    assert submit["MY.DiffanaGpuShare"] == attribute
    assert submit["accounting_group"] == "cms.higgs"
    assert submit["requirements"] == '(TARGET.OpSysAndVer == "AlmaLinux9")'
    assert submit["universe"] == "vanilla"
    assert submit["MY.SingularityImage"] == '"/cvmfs/img"'
    if percent is None:
        assert "environment" not in submit
    else:
        assert submit["environment"] == (f'"CUDA_MPS_ACTIVE_THREAD_PERCENTAGE={percent} '
                                         f'CUDA_MPS_PINNED_DEVICE_MEM_LIMIT={mem_limit}"')


def test_htcondor_site_from_section_sets_runtime_attribute_and_unit() -> None:
    site = HTCondorSite.from_section({"runtime_attribute": "+MaxWallTimeMins",
                                      "runtime_unit": "min", "requirements": ""})
    lines = htcondor_submit_lines(share_of("0.25"), site)
    assert lines["+MaxWallTimeMins"] == "90"
    assert "+MaxRuntime" not in lines and "requirements" not in lines
    submit = htcondor2.Submit(submit_description(lines))
    assert submit["MY.MaxWallTimeMins"] == "90"


def test_htcondor_site_errors() -> None:
    with pytest.raises(ConfigError, match=r"\[condor\].*runtime_unit = 'h'"):
        HTCondorSite.from_section({"runtime_unit": "h"}, name="condor")
    site = HTCondorSite(extra_lines=(("Request_GPUs", "4"),))
    with pytest.raises(ConfigError, match="'Request_GPUs': would replace"):
        htcondor_submit_lines(share_of("1"), site)


@pytest.mark.parametrize("spec", list(CASES))
def test_slurm_options(spec: str) -> None:
    gres = CASES[spec][5]
    options = slurm_options(share_of(spec))
    assert options[0] == gres
    assert options[-3:] == ["--cpus-per-task=4", f"--mem={12 * 1024}M", "--time=01:30:00"]
    mem_limit = CASES[spec][4]
    if mem_limit is None:
        assert len(options) == 4
    else:
        assert options[1] == f"--export=ALL,CUDA_MPS_PINNED_DEVICE_MEM_LIMIT={mem_limit}"


def test_parse_fraction_and_whole() -> None:
    quarter = share_of("0.25")
    assert (quarter.fraction, quarter.n_gpus, quarter.memory_gb) == (0.25, 1, 20.0)
    assert quarter.is_fractional and quarter.percent == 25 and quarter.spec == "0.25"
    two = GpuShare.parse("2.0", memory_gb=40)
    assert (two.fraction, two.n_gpus, two.memory_gb, two.is_fractional) == (None, 2, 40.0, False)
    assert GpuShare.parse("1", card_memory_gb=H100_GB).spec == "1"
    # a fraction of exactly 1 behaves as one whole GPU
    full = GpuShare(1.0, 1, memory_gb=80, cpus=1, host_memory_gb=4, runtime_minutes=60)
    assert not full.is_fractional and slurm_options(full)[0] == "--gres=gpu:1"


@pytest.mark.parametrize(("spec", "kwargs", "match"), [
    ("1.5", {"memory_gb": 8}, r"'1\.5'.*whole number of GPUs"),
    ("0", {"memory_gb": 8}, r"'0'.*must be > 0"),
    ("-0.25", {"memory_gb": 8}, r"'-0\.25'.*must be > 0"),
    ("nan", {"memory_gb": 8}, r"'nan'.*must be > 0"),
    ("half", {"memory_gb": 8}, r"'half': not a number"),
    ("0.001", {"memory_gb": 8}, r"fraction = 0\.001.*0\.01 <= fraction <= 1"),
    ("0.5", {"memory_gb": 96, "card_memory_gb": 80}, r"memory_gb = 96 GiB exceeds.*80 GiB"),
    ("2", {"memory_gb": 81, "card_memory_gb": 80}, r"memory_gb = 81 GiB exceeds.*80 GiB"),
    ("0.5", {}, r"give memory_gb or card_memory_gb"),
    ("0.5", {"memory_gb": 8, "cpus": 0}, r"cpus = 0: must be an integer >= 1"),
    ("0.5", {"memory_gb": 8, "host_memory_gb": -1}, r"host_memory_gb = -1.0: must be > 0"),
    ("0.5", {"memory_gb": 8, "runtime_minutes": 0}, r"runtime_minutes = 0"),
])
def test_parse_errors(spec: str, kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ResourceError, match=match):
        GpuShare.parse(spec, **kwargs)  # type: ignore[arg-type]


def test_constructor_errors() -> None:
    with pytest.raises(ResourceError, match="fraction = 0.5 with n_gpus = 2"):
        GpuShare(0.5, 2, memory_gb=8, cpus=1, host_memory_gb=4, runtime_minutes=60)
    with pytest.raises(ResourceError, match="fraction = 1.5"):
        GpuShare(1.5, 1, memory_gb=8, cpus=1, host_memory_gb=4, runtime_minutes=60)
    with pytest.raises(ResourceError, match="n_gpus = 0"):
        GpuShare(None, 0, memory_gb=8, cpus=1, host_memory_gb=4, runtime_minutes=60)
    with pytest.raises(ResourceError, match="memory_gb = 0"):
        GpuShare(None, 1, memory_gb=0, cpus=1, host_memory_gb=4, runtime_minutes=60)


def test_local_environment() -> None:
    assert local_environment(share_of("0.25")) == {
        "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": "25", "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT": "0=20G"}
    assert local_environment(share_of("0.25"), device_ids=[3])["CUDA_VISIBLE_DEVICES"] == "3"
    assert local_environment(share_of("2")) == {"CUDA_VISIBLE_DEVICES": "0,1"}
    assert local_environment(share_of("2"), device_ids=(1, 3)) == {"CUDA_VISIBLE_DEVICES": "1,3"}
    assert local_environment(GpuShare.parse("0.3", memory_gb=1.5))[
        "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] == "0=1536M"
    with pytest.raises(ResourceError, match=r"'2': device_ids = \[1\] must hold 2 distinct"):
        local_environment(share_of("2"), device_ids=[1])
    with pytest.raises(ResourceError, match=r"device_ids = \[1, 1\]"):
        local_environment(share_of("2"), device_ids=[1, 1])


def test_luigi_gpu_slots() -> None:
    assert [luigi_gpu_slots(share_of(s)) for s in CASES] == [10, 25, 50, 100, 200]
    assert luigi_gpu_slots(share_of("0.25"), slots_per_gpu=4) == 1
    assert luigi_gpu_slots(share_of("0.1"), slots_per_gpu=4) == 1  # never 0
    with pytest.raises(ResourceError, match="slots_per_gpu = 0"):
        luigi_gpu_slots(share_of("1"), slots_per_gpu=0)
