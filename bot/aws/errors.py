"""AWS failures as lemi's two kinds (bot/core/errors.py), each one readable line with what to do.

Every AWS client lemi makes (bot/aws/clients.py) raises these instead of botocore's
exceptions; :func:`translate` decides which:

* :class:`AwsUnavailable` (a :class:`Transient`): throttling (``ThrottlingException``,
  ``TooManyRequestsException``, ...), AWS failing (a 5xx, ``InternalFailure``,
  ``ServiceUnavailable``, ...), no connection, a timeout, credentials that could not be fetched;
* :class:`AwsRefused` (a :class:`UserError`): anything else AWS answered (``AccessDenied``, a
  resource that does not exist, an invalid parameter) and the SDK's own refusals (no
  credentials, no region).

Both are :class:`AwsError`\\ s: ``code`` is AWS's error code, so code inside ``bot.aws`` that
expects one (``ResourceNotFoundException`` for a missing secret) catches :class:`AwsError`
and tests it; ``str(exc)`` is :func:`describe`'s line.
"""

from __future__ import annotations

import aiohttp
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    HTTPClientError,
    MetadataRetrievalError,
    NoCredentialsError,
    NoRegionError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from bot.core.errors import Transient, UserError


class OperationError(UserError):
    """An operation that cannot be done, with what to do instead."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n    hint: {self.hint}" if self.hint else self.message


class AwsError(Exception):
    """An AWS call failed. Raised only as :class:`AwsRefused` or :class:`AwsUnavailable`.

    ``code``: AWS's error code ("" when no AWS service answered); ``message``: AWS's message;
    ``operation``: the API operation ("DescribeServices"); ``status``: the HTTP status, if any."""

    def __init__(
        self, text: str, *, code: str = "", message: str = "", operation: str = "", status: int | None = None
    ) -> None:
        super().__init__(text)
        self.code = code
        self.message = message
        self.operation = operation
        self.status = status


class AwsRefused(AwsError, UserError):
    """AWS (or the SDK) refused the call; trying it again unchanged would be refused again."""


class AwsUnavailable(AwsError, Transient):
    """AWS throttled the call, failed, or could not be reached: it may pass."""


ACCESS_CODES = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnrecognizedClientException"}
# throttling, as botocore's standard retry mode knows it (less LimitExceededException, which
# is a quota in ECS and Secrets Manager), and the codes of AWS failing or timing out
TRANSIENT_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException", "TooManyRequestsException",
    "ProvisionedThroughputExceededException", "TransactionInProgressException", "RequestLimitExceeded",
    "BandwidthLimitExceeded", "RequestThrottled", "SlowDown", "PriorRequestNotComplete", "EC2ThrottledException",
    "RequestTimeout", "RequestTimeoutException", "InternalFailure", "InternalError", "InternalServerError",
    "InternalServerException", "InternalServiceError", "ServerException", "ServiceUnavailable",
    "ServiceUnavailableException",
})  # fmt: skip
# the SDK could not reach AWS, or could not fetch credentials (an instance or container endpoint)
TRANSIENT_SDK_ERRORS = (BotoConnectionError, HTTPClientError, CredentialRetrievalError, MetadataRetrievalError)


def describe(exc: Exception) -> str:
    if isinstance(exc, AwsError):
        return str(exc)
    if isinstance(exc, NoCredentialsError):
        return "no AWS credentials found\n    hint: log in (aws sso login, or set AWS_PROFILE / the AWS_* variables)"
    if isinstance(exc, NoRegionError):
        return "no AWS region configured\n    hint: set region for the environment in lemi.yml"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code", "Error")
        operation = getattr(exc, "operation_name", "")
        message = str(error.get("Message", "")).strip()
        if message.startswith("<") or "\n" in message:  # an HTML error page, not an AWS error
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?")
            message = f"HTTP {status} with a body that is not an AWS error"
        text = f"AWS refused {operation}: {code}: {message[:300]}".rstrip(": ")
        if code in ACCESS_CODES or "ExpiredToken" in code:
            text += "\n    hint: the identity lemi runs as needs the deployer policy in the README (docs: IAM policy)"
        return text
    if isinstance(exc, BotoCoreError):
        return f"AWS call failed: {exc}"
    return str(exc)


def translate(exc: BaseException, host: str = "") -> AwsError | None:
    """lemi's exception for one of botocore's (or of aiohttp's, under aiobotocore); None for
    anything else, which is not an AWS failure. ``host``: the endpoint called, named when it
    could not be reached."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        status = status if isinstance(status, int) else None
        transient = code in TRANSIENT_CODES or (status is not None and status >= 500)
        kind = AwsUnavailable if transient else AwsRefused
        return kind(describe(exc), code=code, message=str(error.get("Message", "")),
                    operation=str(getattr(exc, "operation_name", "")), status=status)  # fmt: skip
    if isinstance(exc, TRANSIENT_SDK_ERRORS):
        return AwsUnavailable(describe(exc))
    if isinstance(exc, BotoCoreError):
        return AwsRefused(describe(exc))
    if isinstance(exc, (aiohttp.ClientError, TimeoutError)):
        where = f" at {host}" if host and host not in str(exc) else ""
        return AwsUnavailable(f"AWS{where} could not be reached: {str(exc) or type(exc).__name__}")
    return None
