"""prism_job_endpoint: Prism started for one run, its endpoint handed to Beam, stopped after."""
import socket

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, PortableOptions
from apache_beam.testing.util import assert_that, equal_to

from pipelines.prism_service import prism_job_endpoint
from tests.conftest import wait_for


def _accepts(endpoint: str) -> bool:
    host, port = endpoint.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=0.5).close()
        return True
    except OSError:
        return False


def test_runs_a_pipeline_on_its_own_prism_and_stops_it(prism_options):
    options = prism_options(streaming=False)
    with prism_job_endpoint(options):
        endpoint = options.view_as(PortableOptions).job_endpoint
        assert endpoint and _accepts(endpoint), "Prism listens before Beam connects"
        with beam.Pipeline(options=options) as p:
            assert_that(p | beam.Create([1, 2, 3]) | beam.Map(lambda x: x * 2),
                        equal_to([2, 4, 6]))
    assert options.view_as(PortableOptions).job_endpoint is None
    wait_for(lambda: not _accepts(endpoint), timeout=10, interval=0.05,
             message="Prism to stop with the context")


def test_leaves_other_runners_and_given_endpoints_alone():
    other = PipelineOptions(["--runner=DirectRunner"])
    with prism_job_endpoint(other):
        assert other.view_as(PortableOptions).job_endpoint is None
    given = PipelineOptions(["--runner=PrismRunner", "--job_endpoint=localhost:1"])
    with prism_job_endpoint(given):
        assert given.view_as(PortableOptions).job_endpoint == "localhost:1"
