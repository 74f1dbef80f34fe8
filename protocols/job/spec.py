"""Job specs: what an owner submits (TOML or JSON), validated field by field.

A spec names a model from the catalogue and its hyper-parameters, and a bundled
dataset or a format of the owner's own files (the ``data`` table: a local path that
never leaves the owner's machine); it never carries code. Validation here is
torch-free so the daemon can check a submission at once; the model's
hyper-parameters are checked again by ``training.models`` when built, and the
owner's data by ``training.owndata`` at submit.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

import distro_json
import distro_schema
from protocols.market.terms import PriceTerms
from training import catalogue as cat
from training.errors import SpecError

__all__ = [
    "MAX_SPEC_BYTES", "MODELS", "JobSpec", "SpecError",
    "for_submit", "from_mapping", "loads", "parse", "read_file", "schema",
]

MODELS = tuple(cat.MODELS)
"""Model names a job may use (the catalogue's)."""
MAX_SPEC_BYTES = 64 * 1024


@dataclass(frozen=True)
class JobSpec(cat.HyperParams):
    """A validated training job.

    Attributes mirror the TOML keys; see docs/jobs.md for each one's meaning. The
    training hyper-parameters (epochs, batch_size, lr, optimizer, momentum, prox_mu)
    are inherited from ``training.catalogue.HyperParams``. The
    annotations are the schema (:func:`schema`); names and hyper-parameter bounds
    come from ``training.catalogue``.
    """

    model: str = "mlp"
    model_params: Mapping[str, Any] = field(default_factory=dict)
    dataset: str = "mnist"
    data: cat.DataSource = field(default_factory=cat.DataSource)
    task: cat.Task = "auto"
    initial_weights: str = ""  # a safetensors file on the owner's machine; "" = random
    lora: cat.LoraSpec = field(default_factory=cat.LoraSpec)
    limit: Annotated[int, Field(ge=0)] = 0  # 0 = the whole training set
    partition: cat.Partition = "dirichlet"
    alpha: Annotated[float, Field(gt=0)] = 0.5
    trainers: Annotated[int, Field(ge=1, le=256)] = 4
    spares: Annotated[int, Field(ge=0, le=256)] = 0
    rounds: Annotated[int, Field(ge=1, le=10_000)] = 20
    rule: cat.Rule = "fedavg"
    rule_params: cat.RuleParams = field(default_factory=cat.RuleParams)
    quorum: Annotated[int, Field(ge=0)] = 0  # 0 = every trainer; at most ``trainers``
    round_deadline_s: Annotated[float, Field(ge=1, le=86_400)] = 120.0
    min_health: Annotated[float, Field(ge=0, le=100)] = 20.0
    seed: cat.Seed = 0
    target_accuracy: Annotated[float, Field(ge=0, le=1)] = 0.0  # 0 = run every round
    chunk_samples: Annotated[int, Field(ge=1, le=1_000_000)] = 2000
    validate_updates: bool = True
    # nats of held-out loss an update may lose against the global model
    quality_margin: Annotated[float, Field(ge=0, le=1000)] = 2.0
    # reject deltas above this times the round's median norm
    norm_factor: Annotated[float, Field(ge=1, le=1000)] = 3.0
    offer_window_s: Annotated[float, Field(ge=0.1, le=600)] = 3.0
    # [price]: budget, max_price (wei) and unit; budget 0 = unpaid (docs/ledger.md)
    price: PriceTerms = field(default_factory=PriceTerms)
    # fraction of slots trained twice and compared (docs/verification.md); 0 = off.
    # Each redundant slot's second trainer is a spare: set spares to match.
    redundancy: Annotated[float, Field(ge=0, le=1)] = 0.0
    # "sized": each trainer's share of the data by its measured speed, so all finish
    # together; "equal": every slot keeps its own chunks (docs/jobs.md, "Sized shares")
    shares: Literal["sized", "equal"] = "sized"
    # how trainers send updates (docs/training.md): plain weights, or the delta in
    # half precision, int8 or top-k with error feedback; topk_fraction is the share
    # of each tensor's values a top-k update sends
    compression: Literal["none", "fp16", "bf16", "int8", "topk"] = "none"
    topk_fraction: Annotated[float, Field(gt=0, le=1)] = 0.01

    def to_json(self) -> str:
        """The canonical JSON form (what is stored and announced)."""
        return json.dumps(asdict(self), sort_keys=True, default=dict)

    @property
    def quorum_count(self) -> int:
        """Accepted updates that close a round early."""
        return self.quorum or self.trainers


def from_mapping(data: Mapping[str, Any]) -> JobSpec:
    """Build and validate a spec from a decoded TOML/JSON mapping.

    Unknown keys are refused (a typo must not silently fall back to a default).

    Raises:
        SpecError: naming the first bad field.
    """
    spec = distro_schema.load(JobSpec, data, error=SpecError)
    _cross_check(spec)
    return spec


def _cross_check(spec: JobSpec) -> None:
    """The rules no single annotation states: catalogue names and pairs, quorum."""
    if spec.model not in cat.MODELS:
        raise SpecError("model", f"unknown model; choose from {', '.join(cat.MODELS)}")
    if spec.dataset not in cat.JOB_DATASETS:
        raise SpecError("dataset", f"choose from {', '.join(cat.JOB_DATASETS)}")
    problem = cat.pair_problem(spec.model, spec.dataset)
    if problem:
        raise SpecError("model", problem)
    if spec.model == "custom":
        from training import blocks  # torch-free

        extra = set(spec.model_params) - {"layers"}
        if extra:
            raise SpecError(f"model_params.{sorted(extra)[0]}", "a custom model has only layers")
        try:
            blocks.normalise(spec.model_params.get("layers"))
        except SpecError as exc:
            raise SpecError(f"model_params.{exc.field}", exc.detail) from None
    else:
        from training.modelspec import check_params  # torch-free

        check_params(spec.model, spec.model_params, prefix="model_params")
    broken = spec.rule_params.problem()
    if broken:
        raise SpecError(f"rule_params.{broken[0]}", broken[1])
    problem = cat.task_problem(spec.dataset, spec.task)
    if problem:
        raise SpecError("task", problem)
    if cat.DATASETS[spec.dataset].source == "owner":
        if not spec.data.path:
            raise SpecError("data.path", f"dataset {spec.dataset!r} reads the owner's files")
        if spec.dataset == "table" and not spec.data.target:
            raise SpecError("data.target", "a table job names its target column")
        if spec.data.validation + spec.data.test >= 0.95:
            raise SpecError("data.test", "validation and test leave too little to train on")
    elif spec.data != cat.DataSource():
        raise SpecError("data", f"dataset {spec.dataset!r} is bundled; data is for owner files")
    if spec.quorum > spec.trainers:
        raise SpecError("quorum", "must be 0..trainers")
    if spec.price.paid and not 0 < spec.price.max_price <= spec.price.budget:
        raise SpecError("price.max_price", "a paid job needs 0 < max_price <= budget")


def schema() -> dict[str, Any]:
    """The JSON Schema of a job spec (what ``distro-train submit --schema`` prints)."""
    return distro_schema.schema(JobSpec)


def parse(text: str | bytes, *, fmt: str = "auto") -> dict[str, Any]:
    """Decode spec text (TOML or JSON; ``fmt``: "toml", "json" or "auto") unvalidated.

    A TOML file may hold the fields at top level or in a ``[job]`` table.

    Raises:
        SpecError: oversize or unparsable (field ``<file>``).
    """
    raw = text.encode() if isinstance(text, str) else text
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError("<file>", f"larger than {MAX_SPEC_BYTES} bytes")
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SpecError("<file>", "not UTF-8 text") from None
    if fmt == "auto":
        fmt = "json" if decoded.lstrip().startswith("{") else "toml"
    try:
        data = distro_json.loads(decoded) if fmt == "json" else tomllib.loads(decoded)
    except (ValueError, RecursionError) as exc:
        raise SpecError("<file>", f"not valid {fmt.upper()}: {exc}") from None
    if isinstance(data, Mapping) and "job" in data and isinstance(data["job"], Mapping):
        data = data["job"]
    if not isinstance(data, dict):
        raise SpecError("<file>", "must hold a table of fields")
    return data


def loads(text: str | bytes, *, fmt: str = "auto") -> JobSpec:
    """Parse and validate a spec from TOML or JSON text (see :func:`parse`).

    Raises:
        SpecError: oversize, unparsable, or invalid (field ``<file>`` when the text
            itself cannot be parsed).
    """
    return from_mapping(parse(text, fmt=fmt))


def read_file(path: Path) -> dict[str, Any]:
    """Read a job file for submission: ``data.path`` made absolute from the file's folder.

    The daemon may run in another directory, so a relative ``data.path`` means
    "relative to the job file"; the mapping returned is what ``jobs.submit`` takes.

    Raises:
        SpecError: unreadable (field ``<file>``), unparsable or invalid.
    """
    try:
        if path.stat().st_size > MAX_SPEC_BYTES:
            raise SpecError("<file>", f"{path}: larger than {MAX_SPEC_BYTES} bytes")
        data = parse(path.read_bytes())
    except OSError as exc:
        raise SpecError("<file>", f"cannot read {path}: {exc}") from None
    data = _resolved(data, path)
    from_mapping(data)
    return data


def _resolved(data: dict[str, Any], path: Path) -> dict[str, Any]:
    weights = data.get("initial_weights")
    if isinstance(weights, str) and weights and not Path(weights).expanduser().is_absolute():
        data = {**data, "initial_weights": str(path.resolve().parent / weights)}
    table = data.get("data")
    if isinstance(table, Mapping) and isinstance(table.get("path"), str) and table["path"]:
        where = Path(table["path"]).expanduser()
        if not where.is_absolute():
            where = path.resolve().parent / where
        data = {**data, "data": {**table, "path": str(where)}}
    return data


def for_submit(text: str, path: Path) -> str | dict[str, Any]:
    """What ``distro-train submit`` sends for job file ``path`` holding ``text``.

    The mapping with ``data.path`` made absolute from the file's folder when the text
    parses; else the text itself, so the daemon reports what is wrong with it.
    """
    try:
        return _resolved(parse(text), path)
    except SpecError:
        return text
