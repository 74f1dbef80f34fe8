"""Job specs: what an owner submits (TOML or JSON), validated field by field.

A spec names a model from the catalogue and its hyper-parameters; it never carries
code. Validation here is torch-free so the daemon can check a submission at once;
the model's hyper-parameters are checked again by ``training.models`` when built.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

MODELS = ("logreg", "mlp", "cnn", "char_lstm")
DATASETS = ("mnist", "digits", "fashion_mnist")
RULES = (
    "fedavg",
    "fedadam",
    "fedyogi",
    "fedadagrad",
    "median",
    "trimmed_mean",
    "krum",
    "multi_krum",
)
OPTIMIZERS = ("sgd", "adam")
PARTITIONS = ("iid", "dirichlet", "shards")
MAX_SPEC_BYTES = 64 * 1024


class SpecError(ValueError):
    """A job spec field is missing or invalid.

    Attributes:
        field: The dotted name of the bad field.
        reason: What is wrong with it.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"job spec field {field!r}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class JobSpec:
    """A validated training job.

    Attributes mirror the TOML keys; see docs/jobs.md for each one's meaning.
    """

    model: str = "mlp"
    model_params: Mapping[str, Any] = field(default_factory=dict)
    dataset: str = "mnist"
    limit: int = 0  # 0 = the whole training set
    partition: str = "dirichlet"
    alpha: float = 0.5
    trainers: int = 4
    spares: int = 0
    rounds: int = 20
    epochs: int = 1
    batch_size: int = 32
    lr: float = 0.05
    optimizer: str = "sgd"
    momentum: float = 0.0
    prox_mu: float = 0.0
    rule: str = "fedavg"
    rule_params: Mapping[str, Any] = field(default_factory=dict)
    quorum: int = 0  # 0 = every trainer
    round_deadline_s: float = 120.0
    min_health: float = 20.0
    seed: int = 0
    target_accuracy: float = 0.0  # 0 = run every round
    chunk_samples: int = 2000
    validate_updates: bool = True
    quality_margin: float = 2.0  # nats of held-out loss an update may lose vs the global model
    norm_factor: float = 3.0  # reject deltas above this times the round's median norm
    offer_window_s: float = 3.0

    def to_json(self) -> str:
        """The canonical JSON form (what is stored and announced)."""
        return json.dumps(asdict(self), sort_keys=True, default=dict)

    @property
    def quorum_count(self) -> int:
        """Accepted updates that close a round early."""
        return self.quorum or self.trainers


def _check(ok: bool, name: str, reason: str) -> None:
    if not ok:
        raise SpecError(name, reason)


def from_mapping(data: Mapping[str, Any]) -> JobSpec:
    """Build and validate a spec from a decoded TOML/JSON mapping.

    Unknown keys are refused (a typo must not silently fall back to a default).

    Raises:
        SpecError: naming the first bad field.
    """
    _check(isinstance(data, Mapping), "<root>", "must be a table/object")
    known = JobSpec.__dataclass_fields__
    for key in data:
        _check(key in known, str(key), "unknown field")
    values: dict[str, Any] = {}
    defaults = JobSpec()
    for name in known:
        if name not in data:
            continue
        value, default = data[name], getattr(defaults, name)
        if isinstance(default, bool):
            _check(isinstance(value, bool), name, "must be true or false")
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
            _check(ok, name, "must be an integer")
        elif isinstance(default, float):
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            _check(ok, name, "must be a number")
            value = float(value)
            _check(value == value and abs(value) != float("inf"), name, "must be finite")
        elif isinstance(default, str):
            _check(isinstance(value, str), name, "must be a string")
        else:
            _check(isinstance(value, Mapping), name, "must be a table/object")
            value = dict(value)
        values[name] = value
    spec = JobSpec(**values)
    validate(spec)
    return spec


def validate(spec: JobSpec) -> None:
    """Check ranges and cross-field rules.

    Raises:
        SpecError: naming the first bad field.
    """
    _check(spec.model in MODELS, "model", f"unknown model; choose from {', '.join(MODELS)}")
    _check(spec.dataset in DATASETS, "dataset", f"choose from {', '.join(DATASETS)}")
    _check(spec.partition in PARTITIONS, "partition", f"choose from {', '.join(PARTITIONS)}")
    _check(spec.rule in RULES, "rule", f"choose from {', '.join(RULES)}")
    _check(spec.optimizer in OPTIMIZERS, "optimizer", f"choose from {', '.join(OPTIMIZERS)}")
    _check(spec.limit >= 0, "limit", "must be >= 0")
    _check(spec.alpha > 0, "alpha", "must be > 0")
    _check(1 <= spec.trainers <= 256, "trainers", "must be 1..256")
    _check(0 <= spec.spares <= 256, "spares", "must be 0..256")
    _check(1 <= spec.rounds <= 10_000, "rounds", "must be 1..10000")
    _check(1 <= spec.epochs <= 100, "epochs", "must be 1..100")
    _check(1 <= spec.batch_size <= 65_536, "batch_size", "must be 1..65536")
    _check(0 < spec.lr <= 10, "lr", "must be in (0, 10]")
    _check(0 <= spec.momentum < 1, "momentum", "must be in [0, 1)")
    _check(spec.prox_mu >= 0, "prox_mu", "must be >= 0")
    _check(0 <= spec.quorum <= spec.trainers, "quorum", "must be 0..trainers")
    _check(1 <= spec.round_deadline_s <= 86_400, "round_deadline_s", "must be 1..86400")
    _check(0 <= spec.min_health <= 100, "min_health", "must be 0..100")
    _check(0 <= spec.target_accuracy <= 1, "target_accuracy", "must be in [0, 1]")
    _check(1 <= spec.chunk_samples <= 1_000_000, "chunk_samples", "must be 1..1000000")
    _check(0.1 <= spec.offer_window_s <= 600, "offer_window_s", "must be 0.1..600")
    _check(spec.seed >= 0, "seed", "must be >= 0")
    _check(0 <= spec.quality_margin <= 1000, "quality_margin", "must be 0..1000")
    _check(1 <= spec.norm_factor <= 1000, "norm_factor", "must be 1..1000")


def loads(text: str | bytes, *, fmt: str = "auto") -> JobSpec:
    """Parse a spec from TOML or JSON text (``fmt``: "toml", "json" or "auto").

    Raises:
        SpecError: oversize, unparsable, or invalid (field ``<file>`` when the text
            itself cannot be parsed).
    """
    raw = text.encode() if isinstance(text, str) else text
    _check(len(raw) <= MAX_SPEC_BYTES, "<file>", f"larger than {MAX_SPEC_BYTES} bytes")
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SpecError("<file>", "not UTF-8 text") from None
    if fmt == "auto":
        fmt = "json" if decoded.lstrip().startswith("{") else "toml"
    try:
        data = json.loads(decoded) if fmt == "json" else tomllib.loads(decoded)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError, RecursionError) as exc:
        raise SpecError("<file>", f"not valid {fmt.upper()}: {exc}") from None
    if isinstance(data, Mapping) and "job" in data and isinstance(data["job"], Mapping):
        data = data["job"]
    return from_mapping(data)
