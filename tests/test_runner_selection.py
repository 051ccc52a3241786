"""Runner selection (pipelines.runner_setup): portable runners need a job endpoint and a
named SDK environment, PROCESS gets the project's boot program, the DaskRunner is taken
by its short name for bounded pipelines only, and the Dask flags pass the unknown-flag
check.  Pure option handling: nothing is started."""
from __future__ import annotations

import json
import os
import shutil

import pytest
from apache_beam.options.pipeline_options import (PipelineOptions, PortableOptions,
                                                  StandardOptions)

from io_connectors.config import _load
from pipelines.runner_setup import (DASK_RUNNER, UsageError, dask_partitions,
                                    prepare_runner, reject_unknown_flags)

ENDPOINT = ["--job_endpoint=localhost:1"]


def prepared(*flags, streaming=False, dask=False) -> PipelineOptions:
    options = PipelineOptions(list(flags))
    return prepare_runner(options, streaming=streaming, dask=dask)


@pytest.mark.parametrize("flags, needs", [
    (["--runner=PortableRunner"], "--job_endpoint"),
    (["--runner=PortableRunner", *ENDPOINT], "--environment_type"),
    (["--runner=FlinkRunner", *ENDPOINT], "--environment_type"),
    (["--runner=FlinkRunner", *ENDPOINT, "--environment_type=EXTERNAL"], "--environment_config"),
    (["--runner=FlinkRunner", *ENDPOINT, "--environment_type=THREADS"], "expected one of"),
    (["--runner=FlinkRunner", "--flink_job_server_jar=/nope/job-server.jar"], "no such file"),
])
def test_portable_runners_refuse_incomplete_flags(flags, needs):
    with pytest.raises(UsageError, match=needs):
        prepared(*flags)


def test_portable_runner_with_a_worker_pool_is_taken_as_given():
    o = prepared("--runner=FlinkRunner", *ENDPOINT, "--environment_type=external",
                 "--environment_config=localhost:2", streaming=True)
    portable = o.view_as(PortableOptions)
    assert o.view_as(StandardOptions).runner == "FlinkRunner"
    assert (portable.environment_type, portable.environment_config) == ("EXTERNAL", "localhost:2")
    assert o.view_as(StandardOptions).streaming


def test_process_environment_defaults_to_the_configured_boot_program(tmp_path, monkeypatch):
    boot = tmp_path / "boot"
    boot.write_text("#!/bin/sh\n")
    boot.chmod(0o755)
    configs = tmp_path / "configs"
    shutil.copytree(os.path.join(os.path.dirname(__file__), "..", "configs"), configs)
    with open(configs / "runner.yaml", "a") as fh:
        fh.write(f"\npython_boot: {boot}\n")
    monkeypatch.setenv("LAKE_CONFIG_DIR", str(configs))
    _load.cache_clear()
    try:
        o = prepared("--runner=PortableRunner", *ENDPOINT, "--environment_type=PROCESS")
        assert json.loads(o.view_as(PortableOptions).environment_config) == {"command": str(boot)}
        os.remove(boot)
        _load.cache_clear()
        with pytest.raises(UsageError, match="PROCESS needs"):
            prepared("--runner=PortableRunner", *ENDPOINT, "--environment_type=PROCESS")
    finally:
        _load.cache_clear()


def test_dask_runner_by_its_short_name_for_bounded_pipelines_only():
    address = "--dask_client_address=tcp://127.0.0.1:1"
    with pytest.raises(UsageError, match="no streaming"):
        prepared("--runner=DaskRunner", address, streaming=True, dask=True)
    with pytest.raises(UsageError, match="only bronze_backfill"):
        prepared("--runner=DaskRunner", address)
    with pytest.raises(UsageError, match="--dask_client_address"):
        prepared("--runner=DaskRunner", dask=True)
    o = prepared("--runner=DaskRunner", address, dask=True)
    assert o.view_as(StandardOptions).runner == DASK_RUNNER


def test_dask_partitions_default_to_the_number_of_inputs_unless_given():
    from apache_beam.runners.dask.dask_runner import DaskOptions
    address = "--dask_client_address=tcp://127.0.0.1:1"
    o = prepared("--runner=DaskRunner", address, dask=True)
    dask_partitions(o, 7)
    assert o.view_as(DaskOptions).npartitions == 7
    o = prepared("--runner=DaskRunner", address, "--dask_npartitions=3", dask=True)
    dask_partitions(o, 7)
    assert o.view_as(DaskOptions).npartitions == 3
    o = prepared("--runner=DirectRunner")
    dask_partitions(o, 7)                       # not Dask: nothing set
    assert "npartitions" not in o.get_all_options(drop_default=True)


def test_dask_flags_pass_the_unknown_flag_check_and_typos_do_not():
    reject_unknown_flags(["--runner=DaskRunner", "--dask_client_address=tcp://h:1",
                          "--dask_npartitions=4"])
    with pytest.raises(UsageError, match="did you mean --dask_npartitions"):
        reject_unknown_flags(["--runner=DaskRunner", "--dask_npartition=4"])
