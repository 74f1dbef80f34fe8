"""The one catalogue: models, datasets, rules, optimizers, partitions and their bounds.

Everything a job may name, and every range a hyper-parameter must fall in, is
declared here once. The job spec (``protocols.job.spec``), the trainer's checks
(:class:`training.local.TrainParams`, :class:`training.models.ModelSpec`), the
aggregation rules, the dataset loaders, the demo's flags and ``--help`` all read it.

The module is torch-free and numpy-free, so the daemon imports it without the
training stack. Bounds are ``Annotated`` types that :mod:`distro_schema` checks.

Which dataset feeds which model: a model reads either flat float ``features`` (every
image dataset, tables, arrays) or int64 ``tokens`` (``text``, ``tiny_text``); a spec
pairing a model with a dataset that cannot feed it is refused with a message saying so
(see :func:`pair_problem`).

Datasets are of two sources: ``bundled`` ones ship with the project (mnist, digits,
fashion_mnist), ``owner`` ones are formats of the owner's own files (``table``,
``npz``, ``images``, ``text``), read from the path in the spec's ``data`` table
(:class:`DataSource`) by ``training.owndata``.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Literal, get_args

from pydantic import Field

Inputs = Literal["features", "tokens"]

# ----- hyper-parameter bounds (shared by the spec and the trainer) -------------------
Epochs = Annotated[int, Field(ge=1, le=100)]
BatchSize = Annotated[int, Field(ge=1, le=65_536)]
LearningRate = Annotated[float, Field(gt=0, le=10)]
Momentum = Annotated[float, Field(ge=0, lt=1)]
ProxMu = Annotated[float, Field(ge=0)]
WeightDecay = Annotated[float, Field(ge=0)]
Seed = Annotated[int, Field(ge=0, lt=2**63)]
Threads = Annotated[int, Field(ge=0, le=1024)]
Optimizer = Literal["sgd", "adam"]


@dataclass(frozen=True)
class HyperParams:
    """The local-training hyper-parameters a job sets, with their one set of bounds.

    ``protocols.job.spec.JobSpec`` and ``training.local.TrainParams`` both derive from
    it, so the owner and the trainer check the same ranges.
    """

    epochs: Epochs = 1
    batch_size: BatchSize = 32
    lr: LearningRate = 0.05
    optimizer: Optimizer = "sgd"
    momentum: Momentum = 0.0
    prox_mu: ProxMu = 0.0


@dataclass(frozen=True)
class Param:
    """One model hyper-parameter.

    Attributes:
        kind: ``"int"``, or ``"ints"`` for a list of 1 to :data:`MAX_LAYERS` positive ints.
        default: Value when the spec leaves it out.
        low: Smallest allowed int (each item's, for ``"ints"``).
        high: Largest allowed int (each item's, for ``"ints"``).
    """

    kind: Literal["int", "ints"]
    default: int | tuple[int, ...]
    low: int = 1
    high: int = 1 << 20


MAX_LAYERS = 16
"""Most hidden layers an ``"ints"`` parameter may list."""


@dataclass(frozen=True)
class Model:
    """One catalogue model.

    Attributes:
        description: One line for docs and CLI listings.
        inputs: What one sample is: ``features`` (flat float32) or ``tokens`` (int64).
        params: Hyper-parameters with defaults and bounds.
    """

    description: str
    inputs: Inputs
    params: Mapping[str, Param]


@dataclass(frozen=True)
class Dataset:
    """One catalogue dataset.

    Attributes:
        description: One line for docs and CLI listings.
        gives: What one sample is (must match a model's ``inputs``).
        side: Image side in pixels (square, one channel), or 0 for non-images or
            owner formats (whose size the data decides).
        jobs: Whether a job spec may name it.
        source: ``bundled`` (ships with the project) or ``owner`` (a format of the
            owner's own files at ``data.path``).
    """

    description: str
    gives: Inputs
    side: int = 0
    jobs: bool = True
    source: Literal["bundled", "owner"] = "bundled"


def _model(description: str, inputs: Inputs, **params: Param) -> Model:
    return Model(description, inputs, types.MappingProxyType(params))


_CLASSES = Param("int", 10, low=1, high=100_000)  # 1: a regression model's one output

MODELS: Mapping[str, Model] = types.MappingProxyType(
    {
        "logreg": _model(
            "multinomial logistic regression on flat features",
            "features",
            in_features=Param("int", 784),
            classes=_CLASSES,
        ),
        "mlp": _model(
            "ReLU MLP; default is McMahan's 2NN 784-200-200-10",
            "features",
            in_features=Param("int", 784),
            hidden=Param("ints", (200, 200), high=1 << 16),
            classes=_CLASSES,
        ),
        "cnn": _model(
            "McMahan's MNIST CNN: 5x5 conv 32, pool, 5x5 conv 64, pool, dense 512",
            "features",
            image_size=Param("int", 28, low=4, high=1024),
            channels=Param("int", 1, low=1, high=16),
            conv1=Param("int", 32, high=4096),
            conv2=Param("int", 64, high=4096),
            dense=Param("int", 512, high=65_536),
            classes=_CLASSES,
        ),
        "char_lstm": _model(
            "character LSTM: embedding, LSTM, linear head predicting the next token",
            "tokens",
            vocab_size=Param("int", 28, low=2, high=65_536),
            seq_len=Param("int", 32, high=4096),
            embed_dim=Param("int", 16, high=4096),
            hidden_size=Param("int", 64, high=8192),
            num_layers=Param("int", 1, high=8),
        ),
        "custom": _model(
            "the job's own architecture: model_params.layers, a list of allowed blocks "
            "(training.blocks); reads features, or tokens when it starts with an embedding",
            "features",
        ),
    }
)

DATASETS: Mapping[str, Dataset] = types.MappingProxyType(
    {
        "mnist": Dataset("MNIST handwritten digits, 28x28", "features", side=28),
        "digits": Dataset("scikit-learn digits, 8x8", "features", side=8),
        "fashion_mnist": Dataset("Fashion-MNIST clothing, 28x28", "features", side=28),
        "tiny_text": Dataset(
            "generated sentences, next-character windows (trainer tests only)",
            "tokens",
            jobs=False,
        ),
        "table": Dataset(
            "the owner's CSV or Parquet table: a target column and feature columns",
            "features",
            source="owner",
        ),
        "npz": Dataset(
            "the owner's NumPy .npz file with arrays x and y", "features", source="owner"
        ),
        "images": Dataset(
            "the owner's image folder: one sub-folder of PNG/JPEG files per class",
            "features",
            source="owner",
        ),
        "text": Dataset(
            "the owner's plain-text files, byte tokens, next-token windows",
            "tokens",
            source="owner",
        ),
    }
)

# ----- the owner's own data (the spec's ``data`` table) -------------------------------
MAX_DATA_BYTES = 1 << 30
"""Default bound on the owner's data files, each and in all (1 GiB)."""
Fraction = Annotated[float, Field(gt=0, le=0.9)]
Names = Annotated[tuple[str, ...], Field(strict=False, max_length=4096)]


@dataclass(frozen=True)
class DataSource:
    """Where the owner's own data is and how to read it (the spec's ``data`` table).

    Only read for the owner formats (``table``, ``npz``, ``images``, ``text``); the
    path never leaves the owner's machine. docs/jobs.md describes each field.

    Attributes:
        path: File or folder on the owner's machine.
        target: Table column to predict.
        features: Table columns to read (empty: every column but the target).
        categorical: Table columns holding categories; any other non-numeric
            feature is an error.
        encoding: ``onehot`` (one 0/1 feature per category) or ``index`` (the
            category's index as one feature).
        missing: ``error`` (refuse, naming row and column), ``drop`` (drop the row)
            or ``fill`` (numeric: the training mean; categorical: its own category).
        image_size: Side in pixels images are resized to.
        channels: 1 (grayscale) or 3 (RGB).
        seq_len: Tokens per text window (the model predicts the next one).
        validation: Fraction kept by the owner to check updates.
        test: Fraction kept by the owner to report accuracy.
        max_bytes: Largest data allowed, each file and in all.
    """

    path: str = ""
    target: str = ""
    features: Names = ()
    categorical: Names = ()
    encoding: Literal["onehot", "index"] = "onehot"
    missing: Literal["error", "drop", "fill"] = "error"
    image_size: Annotated[int, Field(ge=4, le=512)] = 28
    channels: Literal[1, 3] = 1
    seq_len: Annotated[int, Field(ge=2, le=4096)] = 32
    validation: Fraction = 0.1
    test: Fraction = 0.2
    max_bytes: Annotated[int, Field(ge=1)] = MAX_DATA_BYTES

LoraTarget = Literal["linear", "attention", "feedforward"]


@dataclass(frozen=True)
class LoraSpec:
    """Federated fine-tuning with low-rank adapters (the spec's ``lora`` table).

    With ``rank`` > 0 the base weights are frozen; every targeted linear map ``W``
    gains adapters ``A`` (rank x in) and ``B`` (out x rank) and computes
    ``W x + alpha / rank * B A x``; trainers train and upload only ``A`` and ``B``.

    Attributes:
        rank: Adapter rank; 0 trains the whole model as usual.
        alpha: Adapter scale numerator.
        targets: ``linear`` (the model's own linear blocks), ``attention`` (each
            transformer block's ``qkv`` and ``out`` projections), ``feedforward``
            (each transformer block's two feed-forward linears).
    """

    rank: Annotated[int, Field(ge=0, le=1024)] = 0
    alpha: Annotated[float, Field(gt=0, le=1e6)] = 16.0
    targets: Annotated[tuple[LoraTarget, ...], Field(strict=False, min_length=1)] = (
        "linear", "attention",
    )


Task = Literal["auto", "classification", "regression", "next_token"]
"""What a job predicts; ``auto``: ``next_token`` for text, else ``classification``."""
TRAIN_TASKS = ("classification", "regression")
"""What a trainer's loss is: cross-entropy (classes, next token) or squared error."""

Rule = Literal[
    "fedavg", "fedadam", "fedyogi", "fedadagrad", "median", "trimmed_mean", "krum", "multi_krum"
]
Partition = Literal["iid", "dirichlet", "shards"]

RULES: tuple[str, ...] = get_args(Rule)


@dataclass(frozen=True)
class RuleParams:
    """An aggregation rule's settings: a job spec's ``rule_params`` table.

    ``training.aggregate`` reads them (its module table says what each rule does with
    them); the spec checks them when the job is submitted, so a bad one never reaches
    a round. The one rule between fields: ``noise_multiplier`` needs ``clip_norm``
    (:meth:`problem`).

    Attributes:
        f: Faulty updates to tolerate (median, trimmed_mean, krum, multi_krum).
        trim: trimmed_mean fraction trimmed from each side.
        m: multi_krum: updates averaged; None means ``n - f``.
        server_lr: FedOpt server learning rate (eta).
        beta1: FedOpt first-moment decay.
        beta2: FedAdam/FedYogi second-moment decay.
        tau: FedOpt adaptivity (added to ``sqrt(v)``).
        clip_norm: L2 bound on each delta, or None for no clipping.
        noise_multiplier: Gaussian noise std in units of ``clip_norm / n_used`` (needs
            ``clip_norm``); 0 disables noise.
        min_updates: Smallest round any rule accepts.
    """

    f: Annotated[int, Field(ge=0, le=100_000)] = 0
    trim: Annotated[float, Field(ge=0, lt=0.5)] = 0.1
    m: Annotated[int, Field(ge=1, le=100_000)] | None = None
    server_lr: Annotated[float, Field(gt=0, le=1e3)] = 0.1
    beta1: Annotated[float, Field(ge=0, lt=1)] = 0.9
    beta2: Annotated[float, Field(ge=0, lt=1)] = 0.99
    tau: Annotated[float, Field(gt=0, le=1e3)] = 1e-3
    clip_norm: Annotated[float, Field(gt=0)] | None = None
    noise_multiplier: Annotated[float, Field(ge=0)] = 0.0
    min_updates: Annotated[int, Field(ge=1, le=100_000)] = 1

    def problem(self) -> tuple[str, str] | None:
        """(field, reason) of the rule between fields it breaks, or None."""
        if self.noise_multiplier and self.clip_norm is None:
            return "noise_multiplier", "must be 0 unless clip_norm is set"
        return None
FEDOPT = ("fedadam", "fedyogi", "fedadagrad")
OPTIMIZERS: tuple[str, ...] = get_args(Optimizer)
PARTITIONS: tuple[str, ...] = get_args(Partition)
JOB_DATASETS = tuple(name for name, d in DATASETS.items() if d.jobs)
"""Datasets a job spec may name."""
BUNDLED_DATASETS = tuple(n for n in JOB_DATASETS if DATASETS[n].source == "bundled")
"""Job datasets that ship with the project (what the demo's ``--dataset`` offers)."""
OWNER_FORMATS = tuple(n for n in JOB_DATASETS if DATASETS[n].source == "owner")
"""Formats of the owner's own files, read from ``data.path``."""


def feeds(model: str, dataset: str) -> bool:
    """Whether ``dataset``'s samples are what ``model`` reads (both catalogue names).

    A ``custom`` model reads whatever its first block reads; that is checked against
    the data when the job is submitted.
    """
    return model == "custom" or MODELS[model].inputs == DATASETS[dataset].gives


JOB_MODELS = tuple(m for m in MODELS if any(feeds(m, d) for d in JOB_DATASETS))
"""Models some job dataset can feed (what the demo offers)."""


def pair_problem(model: str, dataset: str) -> str | None:
    """Why a job cannot train ``model`` on ``dataset``, or None when it can."""
    if feeds(model, dataset):
        return None
    wants = MODELS[model].inputs
    able = [d for d in JOB_DATASETS if DATASETS[d].gives == wants]
    if able:
        return f"model {model!r} reads {wants}; datasets that feed it: {', '.join(able)}"
    return f"model {model!r} reads {wants} and no job dataset gives {wants} yet"


def task_of(dataset: str, task: str) -> str:
    """The job's task: ``task``, or for ``auto`` what ``dataset`` implies."""
    if task != "auto":
        return task
    return "next_token" if DATASETS[dataset].gives == "tokens" else "classification"


def task_problem(dataset: str, task: str) -> str | None:
    """Why ``dataset`` cannot serve ``task``, or None when it can."""
    task = task_of(dataset, task)
    tokens = DATASETS[dataset].gives == "tokens"
    if tokens != (task == "next_token"):
        return f"dataset {dataset!r} is for {'next_token' if tokens else 'classification'}"
    if task == "regression" and dataset not in ("table", "npz"):
        return "regression reads a numeric target: dataset table or npz"
    return None


def choices(names: tuple[str, ...] | Mapping[str, object]) -> str:
    """``a | b | c``: a catalogue list as shown in ``--help`` and error messages."""
    return " | ".join(names)
