"""Errors the pipeline raises on purpose.

Each carries a stable ``code`` that ends up in the failure notification, so subscribers can
branch on it. The exception *class name* is what Step Functions sees as the task's Error
name, which is how the state machine's Retry/Catch tell transient errors from final ones.
"""


class PipelineError(Exception):
    """A failure we understand; its message is written for the person who uploaded."""

    code = "InternalError"

    def __init__(self, message: str, *, code: str | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code

    def as_dict(self) -> dict:
        return {"code": self.code, "message": self.message}


class InvalidOptionError(PipelineError):
    code = "InvalidOption"
    # The option at fault, when one is (options._invalid sets it).
    option: str | None = None


class ProviderNotConfiguredError(InvalidOptionError):
    """The image asks for a provider this stack has no key for: nothing was sent."""

    code = "ProviderNotConfigured"


class ImageError(PipelineError):
    """The uploaded object cannot become a provider input (empty, corrupt, wrong format, too big)."""

    code = "InvalidImage"


class ProviderError(PipelineError):
    code = "ProviderError"


class ProviderAuthError(ProviderError):
    code = "ProviderAuthRejected"


class ProviderRejectedError(ProviderError):
    """The provider refused the request itself (4xx validation): retrying cannot help."""

    code = "ProviderRejectedRequest"


class ProviderTransientError(ProviderError):
    """429/5xx/connection trouble before any work started: safe to retry."""

    code = "ProviderUnavailable"

    def __init__(
        self, message: str, *, code: str | None = None, status: int | None = None, retry_after: float | None = None
    ):
        super().__init__(message, code=code)
        self.status = status
        self.retry_after = retry_after


class QueueTimeoutError(PipelineError):
    """The upload waited for an admission slot longer than MAX_QUEUE_MINUTES."""

    code = "QueueTimeout"


class SubmitOutcomeUnknownError(ProviderError):
    """The create request was sent but no answer came back: re-sending could charge twice."""

    code = "SubmitOutcomeUnknown"


class ProviderJobFailedError(ProviderError):
    code = "ProviderJobFailed"


class SpendCapReachedError(PipelineError):
    """A daily cap of the stack (jobs, USD or credits per provider) would be passed: nothing was sent."""

    code = "SpendCapReached"


class ResultFetchError(PipelineError):
    """The provider's result could not be fetched safely (host, scheme, size, expiry)."""

    code = "ResultFetchFailed"


class ResultDownloadTransientError(ResultFetchError):
    """A download failed in a way that may pass (5xx, 429, broken connection, timeout): the
    state machine retries Store on this name with backoff; once its retries run out, the
    Catch reports ResultFetchFailed."""


# Error name (exception class) -> stable code, for failures that reach the notifier
# through a Step Functions Catch, where only the class name and message survive.
CODES_BY_ERROR_NAME = {
    cls.__name__: cls.code
    for cls in (
        PipelineError,
        InvalidOptionError,
        ProviderNotConfiguredError,
        ImageError,
        ProviderError,
        ProviderAuthError,
        ProviderRejectedError,
        ProviderTransientError,
        SubmitOutcomeUnknownError,
        ProviderJobFailedError,
        ResultFetchError,
        ResultDownloadTransientError,
        QueueTimeoutError,
        SpendCapReachedError,
    )
}
