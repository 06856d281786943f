"""Pydantic models of a spec's optional ``train:`` section (how ``engine train`` trains it).

Like a Caffe solver file, the section makes training declarative: the data, how
its columns feed the graph's inputs, the optimizer and the schedule.  Every
field here is also a command-line option of ``engine train``, so the field
names follow the option names (``batch_size`` is ``--batch-size``).  Checks that
need the data (column names, label ranges) live in ``engine.train.data``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import Field, StrictInt, field_validator, model_validator

from schemas.base import StrictModel
from schemas.numbers import LARGEST_SIZE, Seed

_ADAM = ("beta1", "beta2", "eps")
#: The one list of optimizers: each name with its coefficients (fields of OptimizerConfig).
COEFFICIENTS: dict[str, tuple[str, ...]] = {
    "sgd": (), "momentum": ("momentum",), "adam": _ADAM, "adamw": _ADAM}
OPTIMIZERS = tuple(COEFFICIENTS)
#: The one list of schedules: each name with its own settings (fields of ScheduleConfig).
SCHEDULE_SETTINGS: dict[str, tuple[str, ...]] = {
    "constant": (), "step": ("step_size", "gamma"), "cosine": ("min_lr",)}
SCHEDULES = tuple(SCHEDULE_SETTINGS)
METRICS = ("accuracy", "mse", "mae")
#: Metrics where a smaller value is better (early stopping's direction).
LOWER_IS_BETTER = ("loss", "mse", "mae")

Column = Annotated[str, Field(min_length=1)] | Annotated[StrictInt, Field(ge=0)]


class _BareName(StrictModel):
    """A model whose ``name`` alone may be written bare (``schedule: cosine``)."""

    @model_validator(mode="before")
    @classmethod
    def _bare_name(cls, data: Any) -> Any:
        return {"name": data} if isinstance(data, str) else data

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> dict[str, Any]:
        # Editors must accept the bare name too (optimizer: adam), as the validator does.
        names = list(get_args(cls.model_fields["name"].annotation))
        return {"anyOf": [{"enum": names}, handler(core_schema)]}


class OptimizerConfig(_BareName):
    """An optimizer and its coefficients; a bare name (``optimizer: adam``) takes the defaults.

    Coefficients of another optimizer are refused, so that ``momentum: 0.9`` on
    ``adam`` is an error rather than a setting silently ignored.
    """

    name: Literal[OPTIMIZERS] = Field(  # type: ignore[valid-type]
        default="sgd", description="sgd: w -= lr*g.  momentum: v = momentum*v + g, w -= lr*v.  "
                                   "adam: Kingma and Ba (2015), with bias correction.  adamw: "
                                   "adam with weight decay decoupled from the gradient "
                                   "(Loshchilov and Hutter 2019).")
    momentum: float = Field(default=0.9, ge=0, lt=1, description="Momentum coefficient.")
    beta1: float = Field(default=0.9, ge=0, lt=1, description="Adam, AdamW: decay of the mean "
                                                              "of gradients.")
    beta2: float = Field(default=0.999, ge=0, lt=1, description="Adam, AdamW: decay of the "
                                                                "mean of squared gradients.")
    eps: float = Field(default=1e-8, gt=0, allow_inf_nan=False,
                       description="Adam, AdamW: added to the denominator.")

    @model_validator(mode="after")
    def _coefficients_fit(self) -> OptimizerConfig:
        allowed = COEFFICIENTS[self.name]
        foreign = sorted(f for f in self.model_fields_set - {"name"} if f not in allowed)
        if foreign:
            fits = ", ".join(allowed) or "none"
            raise ValueError(f"{', '.join(foreign)} is not a coefficient of {self.name} "
                             f"(its coefficients: {fits})")
        return self


class ScheduleConfig(_BareName):
    """The learning rate as a function of the epoch, set before every step.

    ``e`` is the fractional epoch (epoch + batch / batches per epoch), so the rate
    changes smoothly within an epoch; a resumed run recomputes it, there is no state.
    """

    name: Literal[SCHEDULES] = Field(  # type: ignore[valid-type]
        default="constant", description="constant: lr.  step: lr * gamma^floor(epoch / "
                                        "step_size).  cosine: from lr down to min_lr over the "
                                        "epochs after the warmup, half a cosine wave.")
    warmup_epochs: float = Field(
        default=0, ge=0, allow_inf_nan=False,
        description="Linear warmup first: the rate rises from lr/steps to lr over these "
                    "epochs, then the schedule runs.")
    step_size: int = Field(default=10, gt=0, description="step: epochs between decays.")
    gamma: float = Field(default=0.1, gt=0, le=1, description="step: factor of each decay.")
    min_lr: float = Field(default=0.0, ge=0, allow_inf_nan=False,
                          description="cosine: the rate at the last epoch.")

    @model_validator(mode="after")
    def _fields_fit(self) -> ScheduleConfig:
        own = SCHEDULE_SETTINGS[self.name]
        foreign = sorted(f for f in self.model_fields_set - {"name", "warmup_epochs"}
                         if f not in own)
        if foreign:
            raise ValueError(f"{', '.join(foreign)} is not a setting of the {self.name} "
                             f"schedule (its settings: {', '.join((*own, 'warmup_epochs'))})")
        return self


class EarlyStopping(StrictModel):
    """Stop when ``metric`` has not improved for ``patience`` epochs; keep the best epoch."""

    patience: int = Field(default=5, gt=0, description="Epochs without improvement before "
                                                       "training stops.")
    metric: str = Field(default="val_loss", pattern=r"^val_[a-z]+$",
                        description="What is watched: val_loss, or val_ followed by a metric "
                                    "(val_accuracy, val_mse, val_mae); losses and errors "
                                    "should fall, accuracy should rise.")


class MetricsConfig(StrictModel):
    """What is measured besides the loss, from a named prediction node and target input.

    Naming the prediction makes accuracy independent of what the loss adds (an L2
    term, a regulariser); ``mse`` and ``mae`` measure a regression's error.
    """

    prediction: str = Field(min_length=1, description="The node whose value is the prediction "
                                                      "(class probabilities or scores [batch, "
                                                      "K], or regression values).")
    target: str | None = Field(default=None, description="The input holding the truth; "
                                                         "default: the one input fed by a "
                                                         "label, or the one input of the "
                                                         "loss's data that is not a feature.")
    report: list[Literal[METRICS]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: ["accuracy"], min_length=1,
        description="accuracy: argmax of the prediction equals the label (or the one-hot "
                    "target's argmax).  mse, mae: mean squared and mean absolute error.")


class InputData(StrictModel):
    """Where one graph input comes from: table columns, a named array, or class labels.

    A label column holds class indices 0 .. K-1; it becomes one-hot rows when the
    input is declared ``[batch, K]`` (float) and integer indices when it is
    declared ``[batch]`` with dtype int64.
    """

    columns: list[Column] | Literal["rest"] | None = Field(
        default=None, description="Feature columns of a CSV file or .npy table, by header "
                                  "name (CSV) or 0-based index, in the "
                                  "order the input's last axis takes them; 'rest' is every "
                                  "column no other input uses.")
    label: Column | None = Field(default=None, description="One column (or, for .npz or "
                                                          ".zarr data, one 1-D array) of class "
                                                          "indices.")
    array: str | None = Field(default=None, description="For .npz or .zarr data: the array "
                                                        "(rows on axis 0) that feeds the "
                                                        "input whole.")
    standardize: bool = Field(
        default=False, description="Subtract each column's mean and divide by its standard "
                                   "deviation, both computed on the training split only.")

    @field_validator("columns", mode="before")
    @classmethod
    def _list_or_rest(cls, value: Any) -> Any:
        if value is None or value == "rest" or isinstance(value, list):
            return value
        raise ValueError(f"expected a list of columns (names or 0-based indices) or 'rest', "
                         f"found {value!r}")

    @model_validator(mode="after")
    def _one_source(self) -> InputData:
        given = [f for f in ("columns", "label", "array") if getattr(self, f) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of columns (CSV or .npy feature columns), "
                             "array (an .npz or .zarr array) or label (class indices); found "
                             f"{', '.join(given) or 'none'}")
        if isinstance(self.columns, list) and not self.columns:
            raise ValueError("columns is empty: name at least one column")
        if self.label is not None and self.standardize:
            raise ValueError("standardize applies to feature columns, not to a label")
        return self


class TrainConfig(StrictModel):
    """How ``engine train`` trains the graph; each field is also a command-line option."""

    data: str | None = Field(default=None, description="A CSV file (with a header row to "
                                                       "name columns), a .npy table [rows, "
                                                       "columns], or an .npz file or .zarr "
                                                       "store of named arrays, relative to "
                                                       "the spec.")
    inputs: dict[str, InputData] = Field(
        default_factory=dict, description="Graph input -> the data that feeds it.")
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig,
                                       description="sgd, momentum, adam or adamw.")
    weight_decay: float = Field(
        default=0.0, ge=0, allow_inf_nan=False,
        description="L2 regularisation of every parameter: sgd, momentum and adam add "
                    "weight_decay * w to the gradient; adamw subtracts lr * weight_decay * w "
                    "from w, decoupled.")
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig,
                                     description="constant, step or cosine, with an optional "
                                                 "linear warmup.")
    clip_grad_norm: float | None = Field(
        default=None, gt=0, allow_inf_nan=False,
        description="Scale the gradients down when their global L2 norm exceeds this.")
    early_stopping: EarlyStopping | None = Field(
        default=None, description="Stop when a validation metric stops improving; --save "
                                  "then also keeps the best epoch in NAME.best.npz.")
    metrics: MetricsConfig | None = Field(
        default=None, description="The prediction node and target to measure accuracy, MSE or "
                                  "MAE on; default: accuracy when the loss is NLL.")
    lr: float = Field(default=0.01, gt=0, allow_inf_nan=False, description="Learning rate.")
    batch_size: int = Field(default=32, gt=0, le=LARGEST_SIZE,
                            description="Rows per mini-batch; the last batch of an epoch may "
                                        "be smaller.")
    epochs: int = Field(default=10, ge=0, le=LARGEST_SIZE,
                        description="Total number of passes over the training rows (a resumed "
                                    "run counts the epochs already done).")
    shuffle: bool = Field(default=True, description="Visit the training rows in a new random "
                                                    "order each epoch.")
    seed: Seed | None = Field(default=None, description="Seed of the parameters' init, the "
                                                       "split and the batch order; default: "
                                                       "the spec's seed.")
    val_split: float = Field(default=0.2, ge=0, lt=1, description="Fraction of the rows held "
                                                                  "out for validation (when "
                                                                  "val_data is not given).")
    val_data: str | None = Field(default=None, description="A file of validation rows, "
                                                           "mapped like data; it replaces "
                                                           "val_split.")
    test_data: str | None = Field(default=None, description="A file of test rows, mapped like "
                                                            "data, measured once after "
                                                            "training.")

    @model_validator(mode="after")
    def _validation_source(self) -> TrainConfig:
        if self.val_data is not None and "val_split" in self.model_fields_set \
                and self.val_split > 0:
            raise ValueError("give val_data or val_split, not both: val_data replaces the "
                             "split")
        if self.early_stopping is not None and self.val_data is None and self.val_split == 0:
            raise ValueError("early_stopping watches a validation metric, but there are no "
                             "validation rows: set val_split or val_data")
        return self

    @property
    def validates(self) -> bool:
        """Whether there are validation rows (a file or a split)."""
        return self.val_data is not None or self.val_split > 0
