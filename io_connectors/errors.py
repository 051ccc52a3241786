"""Error classes: is a failure worth retrying (transient) or not (permanent)?

``classify(exc)`` is a pure function from an exception to ``TRANSIENT`` or ``PERMANENT``:

- permanent: authentication and authorisation (S3 ``ACCESS_DENIED``,
  ``SIGNATURE_DOES_NOT_MATCH``, ``INVALID_ACCESS_KEY_ID``, HTTP 401/403, NATS
  ``Authorization Violation``, ``EACCES``/``EPERM``), a missing bucket or path
  (``NO_SUCH_BUCKET``, ``ENOENT``, ``ENOTDIR``), invalid configuration or data (our
  ``ConfigError``, any ``ValueError``/``TypeError``/... including pyarrow's ``ArrowInvalid``),
  and every exception that is not an ``OSError``: retrying the same call cannot change it;
- transient: connection refused, reset or unreachable, timeouts, HTTP 5xx, throttling,
  disk full (``ENOSPC``, ``EDQUOT``), a read-only or busy file system, I/O errors, and an
  ``OSError`` this module does not recognise (retried within the caller's bound).

Callers that retry (the shard writers) retry only transient errors, with backoff and a
bound, and turn a permanent one into ``PermanentError`` at once.  ``PermanentError``'s text
starts with a fixed marker, so that the launcher can recognise it in the text a runner
makes of a worker's exception (``permanent_cause``) and stop the job instead of
restarting it.  ``describe(exc)`` is the one-line cause, with the usual fix.  Storage
backends and connectors raise what they get; the policy lives here and in the callers.
"""
from __future__ import annotations

import enum
import errno
import re
from typing import Optional

TRANSIENT = "transient"
PERMANENT = "permanent"
MARKER = "permanent error: "


class ErrorClass(str, enum.Enum):
    TRANSIENT = TRANSIENT
    PERMANENT = PERMANENT


class PermanentError(RuntimeError):
    """A failure that neither a retry nor a restart can fix (bad credentials, missing
    bucket, invalid configuration or data).  Its message is one line naming the cause and
    the fix, prefixed with ``MARKER``; raise it ``from None`` so that it travels alone."""

    def __init__(self, message: str):
        message = " ".join(str(message).split())
        super().__init__(message if message.startswith(MARKER) else MARKER + message)

    @property
    def cause(self) -> str:
        return str(self)[len(MARKER):]


# S3 (pyarrow/AWS SDK error names and S3 error codes) and NATS texts that are permanent;
# other S3 errors (NETWORK_CONNECTION, SLOW_DOWN, HTTP 5xx, ...) are OSErrors: transient.
_PERMANENT_TEXT = re.compile(
    r"ACCESS_DENIED|AccessDenied|SIGNATURE_DOES_NOT_MATCH|SignatureDoesNotMatch|"
    r"INVALID_ACCESS_KEY_ID|InvalidAccessKeyId|INVALID_CLIENT_TOKEN_ID|"
    r"UNRECOGNIZED_CLIENT|MISSING_AUTHENTICATION_TOKEN|NO_SUCH_BUCKET|NoSuchBucket|"
    r"HTTP status 40[0134]\b|Authorization Violation|[Aa]uthentication [Ee]xpired|"
    r"[Uu]ser [Aa]uthentication|Permissions Violation|Account Authentication")
_PERMANENT_ERRNOS = {errno.EACCES, errno.EPERM, errno.ENOENT, errno.ENOTDIR, errno.EISDIR,
                     errno.EINVAL, errno.ENAMETOOLONG, errno.ELOOP, errno.EBADF}
_TRANSIENT_ERRNOS = {errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE,
                     errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN,
                     errno.EAGAIN, errno.EBUSY, errno.EINTR, errno.ENOSPC, errno.EDQUOT,
                     errno.EIO, errno.EROFS, errno.ESTALE, errno.ENOBUFS, errno.ENOMEM}
_TRANSIENT_NATS = ("TimeoutError", "NoServersError", "ConnectionClosedError",
                   "ConnectionReconnectingError", "StaleConnectionError",
                   "OutboundBufferLimitError", "FlushTimeoutError", "NoRespondersError",
                   "SlowConsumerError", "ConnectionDrainingError", "DrainTimeoutError")
_PERMANENT_NATS = ("AuthorizationError", "InvalidUserCredentialsError",
                   "SecureConnRequiredError", "SecureConnWantedError")


def _nats_class(exc: BaseException) -> Optional[ErrorClass]:
    module = type(exc).__module__ or ""
    if not module.startswith("nats"):
        return None
    name = type(exc).__name__
    if name in _PERMANENT_NATS:
        return ErrorClass.PERMANENT
    if name in _TRANSIENT_NATS:
        return ErrorClass.TRANSIENT
    code = getattr(exc, "code", None)         # JetStream API errors: HTTP-like codes
    if isinstance(code, int):
        return ErrorClass.TRANSIENT if code in (408, 429) or code >= 500 else ErrorClass.PERMANENT
    return None


def classify(exc: BaseException) -> ErrorClass:
    """``TRANSIENT`` or ``PERMANENT`` (see the module docstring).  Pure: looks only at the
    exception (its type, errno and text, then its ``__cause__``)."""
    if isinstance(exc, PermanentError):
        return ErrorClass.PERMANENT
    by_nats = _nats_class(exc)
    if by_nats is not None:
        return by_nats
    text = str(exc)
    if _PERMANENT_TEXT.search(text):
        return ErrorClass.PERMANENT
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return ErrorClass.TRANSIENT
    status = getattr(exc, "status", None)     # HTTP status of a storage request
    if isinstance(status, int) and 400 <= status < 600:
        return (ErrorClass.TRANSIENT if status >= 500 or status in (408, 429)
                else ErrorClass.PERMANENT)
    if isinstance(exc, (PermissionError, FileNotFoundError, NotADirectoryError,
                        IsADirectoryError)):
        return ErrorClass.PERMANENT
    if isinstance(exc, OSError):
        if exc.errno in _TRANSIENT_ERRNOS:
            return ErrorClass.TRANSIENT
        if exc.errno in _PERMANENT_ERRNOS:
            return ErrorClass.PERMANENT
        return ErrorClass.TRANSIENT          # unknown I/O trouble: retried within a bound
    if exc.__cause__ is not None and exc.__cause__ is not exc:
        return classify(exc.__cause__)
    return ErrorClass.PERMANENT


def is_transient(exc: BaseException) -> bool:
    """True if retrying the same call may succeed (``classify(exc) is TRANSIENT``)."""
    return classify(exc) is ErrorClass.TRANSIENT


_HINTS = (
    (re.compile(r"ACCESS_DENIED|AccessDenied|HTTP status 403"),
     "S3 denied access: check S3_ACCESS_KEY / S3_SECRET_KEY and the key's rights on the bucket"),
    (re.compile(r"SIGNATURE_DOES_NOT_MATCH|SignatureDoesNotMatch"),
     "S3 rejected the signature: check S3_SECRET_KEY"),
    (re.compile(r"INVALID_ACCESS_KEY_ID|InvalidAccessKeyId|INVALID_CLIENT_TOKEN_ID"),
     "S3 does not know the access key: check S3_ACCESS_KEY"),
    (re.compile(r"NO_SUCH_BUCKET|NoSuchBucket"),
     "the bucket does not exist: create it or fix --data_root"),
    (re.compile(r"Authorization Violation|AuthorizationError|[Uu]ser [Aa]uthentication"),
     "NATS rejected the credentials: check NATS_USER / NATS_PASSWORD or NATS_TOKEN"),
)
_AWS_ERROR = re.compile(r"AWS Error (\w+) during (\w+) operation")


def describe(exc: BaseException) -> str:
    """One line: what failed (the exception's own words, shortened) and the usual fix."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, PermanentError):
        return exc.cause
    aws = _AWS_ERROR.search(text)
    short = f"{aws.group(1)} ({aws.group(2)})" if aws else text
    if len(short) > 200:
        short = short[:197] + "..."
    if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM):
        return f"{short}: permission denied; make the data root writable by this user"
    for pattern, hint in _HINTS:
        if pattern.search(text):
            return f"{hint} ({short})"
    return f"{type(exc).__name__}: {short}"


_IN_TEXT = re.compile(re.escape(MARKER) + r"([^\n\\]*)")


def permanent_cause(text: str) -> Optional[str]:
    """The cause of the first ``PermanentError`` quoted in ``text`` (e.g. the failure
    message a runner gives for a job whose worker raised one), else None."""
    found = _IN_TEXT.search(str(text))
    return found.group(1).strip().rstrip("'\"") if found else None


__all__ = ["ErrorClass", "PermanentError", "classify", "is_transient", "describe",
           "permanent_cause", "MARKER", "TRANSIENT", "PERMANENT"]
