"""Errors raised by the training package.

Every error carries fields, so callers branch on them and never on message text::

    TrainingError
    ├── SpecError(field, reason)            model spec or config value refused
    ├── DatasetUnavailable(name, reason)    dataset absent on this machine
    ├── ChunkError(reason)                  dataset chunk bytes refused
    ├── WeightsError(reason, detail)        weight bytes refused
    ├── TrainingCancelled(batches_done)     ``should_stop`` asked to stop
    ├── TooFewUpdates(rule, have, need)     a rule cannot tolerate its faults
    └── AggregationError(reason, update_id) updates inconsistent with the global model
"""

from __future__ import annotations

from distro_errors import DistroError


class TrainingError(DistroError):
    """Root of every error raised by ``training``."""


class SpecError(TrainingError):
    """A model spec, training parameter or rule config is invalid.

    Attributes:
        field: Name of the offending field (``"name"``, ``"params.hidden"``...).
        reason: Human-readable reason.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class DatasetUnavailable(TrainingError):
    """A dataset is unknown or its files are absent or unreadable.

    Attributes:
        name: Dataset name as asked.
        reason: Why it cannot be loaded.
    """

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"dataset {name!r} unavailable: {reason}")
        self.name = name
        self.reason = reason


class ChunkError(TrainingError):
    """Dataset chunk bytes were refused.

    Attributes:
        reason: Short code: ``oversize``, ``malformed``, ``names``, ``dtype``, ``shape``,
            ``labels`` or ``non_finite``.
        detail: Human-readable detail.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"chunk refused ({reason}): {detail}")
        self.reason = reason
        self.detail = detail


class WeightsError(TrainingError):
    """Weight bytes were refused.

    Attributes:
        reason: Short code: ``oversize``, ``malformed``, ``names``, ``shape`` or ``dtype``.
        detail: Human-readable detail.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"weights refused ({reason}): {detail}")
        self.reason = reason
        self.detail = detail


class TrainingCancelled(TrainingError):
    """Local training stopped because ``should_stop`` returned true.

    Attributes:
        batches_done: Batches completed before the stop was seen.
    """

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
