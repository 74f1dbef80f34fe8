"""Errors raised by the training package.

Every error carries fields, so callers branch on them and never on message text.
``reason`` is the machine-readable code a boundary reports (a trainer's refusal, an
RPC answer); ``problem`` and ``detail`` say more, for logs and for local callers::

    TrainingError                                   reason
    ├── SpecError(field, detail)                    bad_spec
    │   └── DataError(file, where, problem)         bad_data
    ├── DatasetUnavailable(name, detail)            no_dataset
    ├── DeviceUnavailable(device, detail)           no_device
    ├── ChunkError(problem, detail)                 bad_chunk
    ├── WeightsError(problem, detail)               bad_model
    ├── TrainingCancelled(batches_done)             cancelled
    ├── TooFewUpdates(rule, have, need)             too_few_updates
    └── AggregationError(reason, update_id, detail) names, shape, duplicate_id...
"""

from __future__ import annotations

from distro_errors import DistroError


class TrainingError(DistroError):
    """Root of every error raised by ``training``."""


class SpecError(TrainingError):
    """A model spec, training parameter or rule config is invalid.

    Attributes:
        field: Name of the offending field (``"name"``, ``"params.hidden"``...).
        detail: Human-readable reason.
    """

    reason = "bad_spec"

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail


class DataError(SpecError):
    """The owner's data cannot be used as the spec says.

    A :class:`SpecError` on field ``data``, so whoever reports bad specs reports it.

    Attributes:
        file: The file or folder at fault.
        where: The row and/or column (``"row 3, column 'age'"``), or "".
        problem: What is wrong, and where it helps, how to fix it.
    """

    reason = "bad_data"

    def __init__(self, file: str, where: str, problem: str) -> None:
        super().__init__("data", f"{file}: {where + ': ' if where else ''}{problem}")
        self.file = file
        self.where = where
        self.problem = problem


class _Unavailable(TrainingError):
    """Something named cannot be used here (a subclass says what, in ``what``).

    Attributes:
        name: The name asked for.
        detail: Why it cannot be used.
    """

    what = ""

    def __init__(self, name: str, detail: str) -> None:
        super().__init__(f"{self.what} {name!r} unavailable: {detail}")
        self.name = name
        self.detail = detail


class DatasetUnavailable(_Unavailable):
    """A dataset is unknown or its files are absent or unreadable (``name``: as asked)."""

    reason = "no_dataset"
    what = "dataset"


class DeviceUnavailable(_Unavailable):
    """The configured training device (``name``, also ``device``) cannot be used here."""

    reason = "no_device"
    what = "device"

    @property
    def device(self) -> str:
        """The device asked for (``cuda``)."""
        return self.name


class _Refused(TrainingError):
    """Bytes were refused (a subclass says which, in ``what``).

    Attributes:
        problem: Short code (each subclass lists its own).
        detail: Human-readable detail.
    """

    what = ""

    def __init__(self, problem: str, detail: str = "") -> None:
        super().__init__(f"{self.what} refused ({problem}): {detail}")
        self.problem = problem
        self.detail = detail


class ChunkError(_Refused):
    """Dataset chunk bytes were refused.

    ``problem``: ``oversize``, ``malformed``, ``names``, ``dtype``, ``shape``, ``labels``
    or ``non_finite``.
    """

    reason = "bad_chunk"
    what = "chunk"


class WeightsError(_Refused):
    """Weight bytes were refused.

    ``problem``: ``oversize``, ``malformed``, ``names``, ``shape`` or ``dtype``.
    """

    reason = "bad_model"
    what = "weights"


class TrainingCancelled(TrainingError):
    """Local training stopped because ``should_stop`` returned true.

    Attributes:
        batches_done: Batches completed before the stop was seen.
    """

    reason = "cancelled"

    def __init__(self, batches_done: int) -> None:
        super().__init__(f"training cancelled after {batches_done} batches")
        self.batches_done = batches_done


class TooFewUpdates(TrainingError):
    """An aggregation rule got fewer updates than its fault tolerance needs.

    Attributes:
        rule: Rule name.
        have: Updates given.
        need: Minimum updates the rule needs with its configured ``f``.
    """

    reason = "too_few_updates"

    def __init__(self, rule: str, have: int, need: int) -> None:
        super().__init__(f"rule {rule!r} needs at least {need} updates, got {have}")
        self.rule = rule
        self.have = have
        self.need = need


class AggregationError(TrainingError):
    """Updates cannot be aggregated (shape mismatch, duplicate id, bad state).

    Attributes:
        reason: Short code: ``names``, ``shape``, ``duplicate_id``, ``samples`` or ``state``.
        update_id: The update concerned, or ``""``.
    """

    def __init__(self, reason: str, update_id: str = "", detail: str = "") -> None:
        super().__init__(f"cannot aggregate ({reason}) {update_id}: {detail}".rstrip(": "))
        self.reason = reason
        self.update_id = update_id
        self.detail = detail
