"""Shared fixtures (a seeded rng, the tiny config, generated NanoAOD files, a temporary store) and
the collection hooks: skip `gpu` tests without CUDA, `--reverse-order`, and which tests one
pytest-xdist worker runs together, longest first (the suite runs on two workers: pyproject's
addopts; ``-n 0`` runs it in one process)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from analysis.config import AnalysisConfig, load_config
from analysis.events.generate import generate_chunk

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cms-nanoaod"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--reverse-order", action="store_true", default=False,
                     help="run the collected tests last to first: a check that no test depends "
                          "on one before it (pytest-random-order's --random-order-bucket "
                          "shuffles instead)")


# What one pytest-xdist worker runs as a whole (addopts: --dist loadscope, the scheduler below):
# a test module (its module-scoped fixtures are built once), or one of these groups of modules:
# the Slurm tests (one Slurm cluster per run: tests/integration/conftest.py's slurm_cluster), and
# the tests marked gpu (on a GPU machine, one at a time: some start a real MPS daemon, some time
# the GPU). The collection hook checks that every such test is in its group.
GROUPS = {
    "slurm": ("tests/integration/test_batch_workflows.py", "tests/integration/test_gpu_slurm.py"),
    "gpu": ("tests/unit/gpu/test_benchmark.py", "tests/unit/gpu/test_device.py",
            "tests/unit/gpu/test_mps.py", "tests/unit/relax/test_cuts.py",
            "tests/unit/relax/test_histograms.py", "tests/unit/training/test_loop.py"),
}
# The longest work first, so that the two workers finish together (seconds on a 2-core machine,
# one process): the Slurm tests (~250 with the cluster), the Report graph from nothing (~270),
# the train tasks (~100), the torch fitter against pyhf + MINUIT on the demo workspace (~65,
# -n 0 on 2026-12-05; in collection order it came after ~20 integration and unit modules) and
# the tests that time the GPU (~10 without one); every other module takes under 50.
LONGEST_FIRST = ("slurm", "tests/integration/test_report_tasks.py",
                 "tests/integration/test_train_tasks.py",
                 "tests/unit/inference/test_torch_vs_pyhf_demo.py", "gpu")


def work_unit(nodeid: str) -> str:
    """The work unit of the test ``nodeid``: the name of its group in :data:`GROUPS`, else the
    path of its module."""
    module = nodeid.split("::", 1)[0]
    return next((name for name, modules in GROUPS.items() if module in modules), module)


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: absent with -p no:xdist
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """``--dist loadscope`` with :func:`work_unit` as the scope (pytest-xdist's ``loadgroup``
    would do with ``xdist_group`` marks, but pytest 9 ignores the node ids it rewrites)."""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class WorkUnitScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return WorkUnitScheduling(config, log)


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(config: pytest.Config,
                                  items: list[pytest.Item]) -> Iterator[None]:
    """Before the other plugins (pytest-random-order may shuffle after): the longest work units
    first (:data:`LONGEST_FIRST`; ``--no-loadscope-reorder`` keeps this order in pytest-xdist's
    queue). After them all (pytest grouped the tests by their fixtures' scopes):
    ``--reverse-order`` reverses the tests; ``gpu`` tests skip without CUDA."""
    def rank(item: pytest.Item) -> int:
        unit = work_unit(item.nodeid)
        return LONGEST_FIRST.index(unit) if unit in LONGEST_FIRST else len(LONGEST_FIRST)

    for item in items:
        needs = {"slurm": "slurm_cluster" in getattr(item, "fixturenames", ()),
                 "gpu": item.get_closest_marker("gpu") is not None}
        for group in (g for g, needed in needs.items() if needed):
            if work_unit(item.nodeid) != group:
                raise pytest.UsageError(f"{item.nodeid}: add its module to GROUPS[{group!r}] in "
                                        f"tests/conftest.py (a worker runs these tests together)")
    items.sort(key=rank)  # stable: the collection's order within a rank
    yield
    if config.getoption("--reverse-order"):
        items.reverse()
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if item.get_closest_marker("gpu") is not None:  # keywords would match a folder "gpu"
            item.add_marker(skip)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261123)


@pytest.fixture(scope="session")
def tiny_config() -> AnalysisConfig:
    return load_config("tth_bb_tiny")


@pytest.fixture(scope="session")
def nano_file(tmp_path_factory: pytest.TempPathFactory, tiny_config: AnalysisConfig) -> Path:
    """One generated ttH chunk (60 events) in NanoAOD format."""
    path = tmp_path_factory.mktemp("nano") / "tth_0.root"
    generate_chunk(tiny_config, "tth", 0, path)
    return path


@pytest.fixture(scope="session")
def ttbar_file(tmp_path_factory: pytest.TempPathFactory, tiny_config: AnalysisConfig) -> Path:
    """One generated tt chunk of the filtered complement sample (60 events)."""
    path = tmp_path_factory.mktemp("nano") / "tt_rest_0.root"
    generate_chunk(tiny_config, "tt_rest", 0, path)
    return path


@pytest.fixture
def cms_file() -> Path:
    path = SHARED_DATA / "nano_tt_v12.root"
    if not path.exists():
        pytest.fail(f"real CMS NanoAOD file missing: {path} (shared/ must sit beside the repo)")
    return path


FAKE_MPS_CONTROL = """#!/bin/sh
# fake nvidia-cuda-mps-control: records its calls, creates/removes the control pipe file
if [ "$1" = "-d" ]; then
    echo "start $CUDA_MPS_PIPE_DIRECTORY $CUDA_MPS_LOG_DIRECTORY" >> "{calls}"
    touch "$CUDA_MPS_PIPE_DIRECTORY/control"
    exit 0
fi
read command
echo "$command $CUDA_MPS_PIPE_DIRECTORY" >> "{calls}"
if [ "$command" = quit ]; then rm -f "$CUDA_MPS_PIPE_DIRECTORY/control"; fi
"""


@pytest.fixture
def fake_mps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake MPS control binary first on PATH; returns the file that records its calls
    (``start <pipe dir> <log dir>``, ``<command> <pipe dir>``)."""
    from analysis.gpu.mps import MPS_CONTROL

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.txt"
    script = bin_dir / MPS_CONTROL
    script.write_text(FAKE_MPS_CONTROL.format(calls=calls))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return calls


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty store for law tasks (``$DIFFANA_STORE``)."""
    path = tmp_path / "store"
    monkeypatch.setenv("DIFFANA_STORE", str(path))
    return path


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> Iterator[None]:
    """The tests use small tensors: one intra-op thread avoids spin-waiting on a busy 2-core CPU,
    and keeps results independent of the machine's core count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        # tasks, in this process or in a law subprocess, keep one thread too (tasks/base.py)
        patch.setenv("DIFFANA_TORCH_THREADS", "1")
        yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True, scope="session")
def _law_config() -> Iterator[None]:
    """Run law from the repository root so that law.cfg is found (unless the caller chose a
    config); the environment is restored after the session."""
    with pytest.MonkeyPatch.context() as patch:
        if "LAW_CONFIG_FILE" not in os.environ:
            patch.setenv("LAW_CONFIG_FILE", str(Path(__file__).resolve().parents[1] / "law.cfg"))
        yield


def fresh_law_process() -> None:
    """Forget what earlier in-process builds left, as a new ``law run`` process would: luigi's
    cached task instances and law's process-wide record of which local workflows have yielded
    their branches (with it, a workflow built in one store would not run its branches again in
    another store)."""
    import luigi

    from tasks.law_adapter import forget_yielded_local_workflows

    luigi.task_register.Register.clear_instance_cache()
    forget_yielded_local_workflows()


@pytest.fixture(autouse=True)
def _fresh_luigi_instances() -> Iterator[None]:
    """Each test starts as a new ``law run`` process would (:func:`fresh_law_process`)."""
    fresh_law_process()
    yield
