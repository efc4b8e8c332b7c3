#!/usr/bin/env bash
# Sourced by law's job wrapper (law_job.sh) on the worker before the task runs. law renders the
# {{...}} variables on the worker from what GpuWorkflow recorded at submission, so the job sees the
# checkout, virtual environment, store and law.cfg of the submitting user (a shared file system).

bootstrap_diffana() {
    export DIFFANA_BASE="{{diffana_base}}"
    export DIFFANA_STORE="{{diffana_store}}"
    export LAW_CONFIG_FILE="{{diffana_law_config}}"
    local venv="{{diffana_venv}}"

    if [ ! -f "${venv}/bin/activate" ]; then
        >&2 echo "diffana bootstrap: no virtual environment at ${venv} (law.cfg [diffana_remote] venv)"
        return 1
    fi
    source "${venv}/bin/activate" "" || return 2
    export PYTHONPATH="${DIFFANA_BASE}${PYTHONPATH:+:${PYTHONPATH}}"
    # one thread per requested core; the batch system says how many
    export OMP_NUM_THREADS="${SLURM_CPUS_PER_TASK:-${OMP_NUM_THREADS:-1}}"
    echo "diffana bootstrap: base ${DIFFANA_BASE}, store ${DIFFANA_STORE}, python $(command -v python)"
}

bootstrap_diffana "$@"
