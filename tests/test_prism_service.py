"""prism_job_endpoint: Prism started for one run, its endpoint handed to Beam, stopped after."""
import socket

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, PortableOptions
from apache_beam.testing.util import assert_that, equal_to

from pipelines.prism_service import local_runner, prism_job_endpoint
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


def listening_addresses(port: int) -> set:
    """Local addresses of the sockets listening on ``port`` (from /proc/net/tcp[6])."""
    out = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(name).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            addr, hexport = local.split(":")
            if state == "0A" and int(hexport, 16) == port:
                raw = bytes.fromhex(addr)
                if len(raw) == 4:
                    out.add(socket.inet_ntop(socket.AF_INET, raw[::-1]))
                else:       # four little-endian 32-bit words
                    words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
                    out.add(socket.inet_ntop(socket.AF_INET6, words))
    return out


LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1", "::1"}


def test_prism_and_the_in_process_worker_pool_listen_on_loopback_only(prism_options):
    options = prism_options(streaming=False)
    with local_runner(options):
        portable = options.view_as(PortableOptions)
        prism_port = int(portable.job_endpoint.rsplit(":", 1)[1])
        assert portable.environment_type == "EXTERNAL"
        host, pool_port = portable.environment_config.rsplit(":", 1)
        assert host == "127.0.0.1"
        assert listening_addresses(prism_port) and listening_addresses(prism_port) <= LOOPBACK
        assert listening_addresses(int(pool_port)) and \
            listening_addresses(int(pool_port)) <= LOOPBACK
        with beam.Pipeline(options=options) as p:     # the SDK worker runs in this process
            assert_that(p | beam.Create(["a", "b"]) | beam.Map(str.upper),
                        equal_to(["A", "B"]))
    assert options.view_as(PortableOptions).environment_type == "LOOPBACK"
    assert options.view_as(PortableOptions).environment_config is None


def test_prism_ui_is_off_by_default_and_served_on_request(prism_options):
    from apache_beam.utils.subprocess_server import pick_port
    ui_port, = pick_port(None)
    options = prism_options(False, f"--prism_ui_port={ui_port}")
    with prism_job_endpoint(options):
        assert not listening_addresses(ui_port)
    options = prism_options(False, "--prism_ui", f"--prism_ui_port={ui_port}")
    with prism_job_endpoint(options):
        page = wait_for(lambda: _get(f"http://localhost:{ui_port}/"), timeout=20,
                        message="Prism's web UI")
        assert b"<html" in page.lower()
        assert listening_addresses(ui_port) <= LOOPBACK


def _get(url):
    import urllib.request
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.read()
    except OSError:
        return None
