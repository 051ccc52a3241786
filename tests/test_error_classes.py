"""io_connectors.errors (permanent vs transient, one-line causes) and
io_connectors.retry_policy (transient retried within a bound, permanent never)."""
from __future__ import annotations

import contextlib
import errno

import nats.errors
import pytest

from io_connectors.errors import (PERMANENT, TRANSIENT, PermanentError, classify, describe,
                                  permanent_cause)
from io_connectors.retry_policy import RetryPolicy

AWS = "When getting information for key 'p/x' in bucket 'b': AWS Error {} during {} operation: x"


@pytest.mark.parametrize("exc, expected", [
    (OSError(AWS.format("ACCESS_DENIED", "HeadObject")), PERMANENT),
    (OSError(AWS.format("SIGNATURE_DOES_NOT_MATCH", "ListObjectsV2")), PERMANENT),
    (OSError(AWS.format("INVALID_ACCESS_KEY_ID", "ListObjectsV2")), PERMANENT),
    (OSError(AWS.format("NO_SUCH_BUCKET", "PutObject")), PERMANENT),
    (OSError(AWS.format("NETWORK_CONNECTION", "HeadObject") + " curlCode: 7"), TRANSIENT),
    (OSError(AWS.format("UNKNOWN", "PutObject") + " (HTTP status 503)"), TRANSIENT),
    (OSError(AWS.format("SLOW_DOWN", "PutObject")), TRANSIENT),
    (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), TRANSIENT),
    (ConnectionResetError(errno.ECONNRESET, "reset"), TRANSIENT),
    (TimeoutError("timed out"), TRANSIENT),
    (OSError(errno.ENOSPC, "No space left on device"), TRANSIENT),
    (OSError(errno.EROFS, "Read-only file system"), TRANSIENT),
    (PermissionError(errno.EACCES, "Permission denied"), PERMANENT),
    (FileNotFoundError(errno.ENOENT, "No such file or directory"), PERMANENT),
    (ConnectionError("NATS at x rejected the connection (Error: nats: 'Authorization "
                     "Violation')"), PERMANENT),
    (nats.errors.Error("nats: 'Authorization Violation'"), PERMANENT),
    (nats.errors.TimeoutError(), TRANSIENT),
    (nats.errors.ConnectionClosedError(), TRANSIENT),
    (nats.errors.NoServersError(), TRANSIENT),
    (ValueError("column x is not nullable but holds nulls"), PERMANENT),
    (PermanentError("whatever"), PERMANENT),
])
def test_classify(exc, expected):
    assert classify(exc) == expected


def test_describe_and_permanent_cause_give_one_line():
    line = describe(OSError(AWS.format("ACCESS_DENIED", "HeadObject")))
    assert line == ("S3 denied access: check S3_ACCESS_KEY / S3_SECRET_KEY and the key's "
                    "rights on the bucket (ACCESS_DENIED (HeadObject))")
    err = PermanentError("write of a shard to s3://b/x: bad\nthings")
    assert str(err) == "permanent error: write of a shard to s3://b/x: bad things"
    job_text = (f"Traceback ...\n  File x\nio_connectors.errors.PermanentError: {err} "
                "[while running 'W']\n")
    assert permanent_cause(job_text) == \
        "write of a shard to s3://b/x: bad things [while running 'W']"
    assert permanent_cause("RuntimeError: Prism crashed") is None


class _Flaky:
    def __init__(self, failures, exc):
        self.calls, self.failures, self.exc = 0, failures, exc

    def __call__(self):
        self.calls += 1
        if self.calls <= self.failures:
            raise self.exc
        return "done"


def test_transient_errors_are_retried_with_the_hold_entered_then_succeed():
    held = []

    @contextlib.contextmanager
    def hold():
        held.append("in")
        yield
        held.append("out")
    fn = _Flaky(3, ConnectionResetError(errno.ECONNRESET, "reset"))
    policy = RetryPolicy(max_s=30, first_wait_s=0.01, max_wait_s=0.02)
    assert policy.call(fn, "write x", hold) == "done"
    assert fn.calls == 4 and held == ["in", "out"]


def test_permanent_errors_are_never_retried():
    fn = _Flaky(5, PermissionError(errno.EACCES, "Permission denied"))
    with pytest.raises(PermanentError, match="write x: .*permission denied"):
        RetryPolicy(max_s=30, first_wait_s=0.01, max_wait_s=0.02).call(fn, "write x")
    assert fn.calls == 1


def test_transient_errors_are_given_up_after_the_bound():
    fn = _Flaky(10**6, ConnectionRefusedError(errno.ECONNREFUSED, "refused"))
    with pytest.raises(ConnectionRefusedError):
        RetryPolicy(max_s=0.2, first_wait_s=0.01, max_wait_s=0.02).call(fn, "write x")
    assert 2 < fn.calls < 10**6
