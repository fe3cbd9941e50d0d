"""AWS failures as one readable line with what to do about it."""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError


class OperationError(Exception):
    """An operation that cannot be done, with what to do instead."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n    hint: {self.hint}" if self.hint else self.message


ACCESS_CODES = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnrecognizedClientException"}


def describe(exc: Exception) -> str:
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
