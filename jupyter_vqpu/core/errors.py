"""Errors a user can see.

Every error carries a one-line message that says what is wrong and a ``hint``
that says what to do; the CLI, the magic and the HTTP API print exactly those
two things, never a traceback from deep inside the stack.
"""

from __future__ import annotations


class VqpuError(Exception):
    """Base of every error jupyter-vqpu raises on purpose.

    ``code`` is a stable machine-readable name (used in JSON error bodies),
    ``hint`` is the "what to do" half of the message.
    """

    code = "error"
    http_status = 400

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message

    def to_dict(self) -> dict:
        return {"error": self.code, "message": self.message, "hint": self.hint}


class InvalidRequest(VqpuError):
    code = "invalid_request"


class LimitExceeded(InvalidRequest):
    code = "limit_exceeded"


class PayloadTooLarge(LimitExceeded):
    """A request body over the API's size limit, refused before it is read."""

    code = "payload_too_large"
    http_status = 413


class AmbiguousReference(InvalidRequest):
    """A short id or prefix that matches more than one snapshot or task (the message lists them)."""

    code = "ambiguous_reference"


class CircuitError(InvalidRequest):
    code = "invalid_circuit"


class UnknownDevice(VqpuError):
    code = "unknown_device"
    http_status = 404


class DeviceDraining(VqpuError):
    code = "device_draining"
    http_status = 409


class UnknownSnapshot(VqpuError):
    code = "unknown_snapshot"
    http_status = 404


class SnapshotError(VqpuError):
    code = "invalid_snapshot"


class TaskNotFound(VqpuError):
    code = "task_not_found"
    http_status = 404


class NotAuthorized(VqpuError):
    code = "forbidden"
    http_status = 403


class TaskFailed(VqpuError):
    code = "task_failed"
    http_status = 409


class TaskCancelled(VqpuError):
    code = "task_cancelled"
    http_status = 409


class ResultTimeout(VqpuError):
    code = "timeout"
    http_status = 504


class ControlPlaneUnavailable(VqpuError):
    code = "control_plane_unavailable"
    http_status = 503


class NotDurable(ControlPlaneUnavailable):
    """The write is on the master but not (yet) on as many replicas, or in the AOF, as the operator
    asked (``?wait_replicas=`` / ``wait_aof``): not acknowledged, because a failover now could lose it.
    Retrying with the same idempotency key is safe (a retry of a submission finds the task)."""

    code = "not_durable"
