"""Pydantic models of a spec's optional ``train:`` section (how ``engine train`` trains it).

Like a Caffe solver file, the section makes training declarative: the data, how
its columns feed the graph's inputs, the optimizer and the schedule.  Every
field here is also a command-line option of ``engine train``, so the field
names follow the option names (``batch_size`` is ``--batch-size``).  Checks that
need the data (column names, label ranges) live in ``engine.train.data``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StrictInt, field_validator, model_validator

from schemas.base import StrictModel

#: The one list of optimizers: each name with its coefficients (fields of OptimizerConfig).
COEFFICIENTS: dict[str, tuple[str, ...]] = {
    "sgd": (), "momentum": ("momentum",), "adam": ("beta1", "beta2", "eps")}
OPTIMIZERS = tuple(COEFFICIENTS)
OptimizerName = Literal[OPTIMIZERS]  # type: ignore[valid-type]  # built from the table above

Column = Annotated[str, Field(min_length=1)] | Annotated[StrictInt, Field(ge=0)]


class OptimizerConfig(StrictModel):
    """An optimizer and its coefficients; a bare name (``optimizer: adam``) takes the defaults.

    Coefficients of another optimizer are refused, so that ``momentum: 0.9`` on
    ``adam`` is an error rather than a setting silently ignored.
    """

    name: OptimizerName = Field(  # type: ignore[valid-type]
        default="sgd", description="sgd: w -= lr*g.  momentum: v = momentum*v + g, w -= lr*v.  "
                                   "adam: Kingma and Ba (2015), with bias correction.")
    momentum: float = Field(default=0.9, ge=0, lt=1, description="Momentum coefficient.")
    beta1: float = Field(default=0.9, ge=0, lt=1, description="Adam: decay of the mean of "
                                                              "gradients.")
    beta2: float = Field(default=0.999, ge=0, lt=1, description="Adam: decay of the mean of "
                                                                "squared gradients.")
    eps: float = Field(default=1e-8, gt=0, allow_inf_nan=False,
                       description="Adam: added to the denominator.")

    @model_validator(mode="before")
    @classmethod
    def _bare_name(cls, data: Any) -> Any:
        return {"name": data} if isinstance(data, str) else data

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> dict[str, Any]:
        # Editors must accept the bare name too (optimizer: adam), as the validator does.
        names = list(OPTIMIZERS)
        return {"anyOf": [{"enum": names}, handler(core_schema)]}

    @model_validator(mode="after")
    def _coefficients_fit(self) -> OptimizerConfig:
        allowed = COEFFICIENTS[self.name]
        foreign = sorted(f for f in self.model_fields_set - {"name"} if f not in allowed)
        if foreign:
            fits = ", ".join(allowed) or "none"
            raise ValueError(f"{', '.join(foreign)} is not a coefficient of {self.name} "
                             f"(its coefficients: {fits})")
        return self


class InputData(StrictModel):
    """Where one graph input comes from: CSV feature columns, an .npz array, or class labels.

    A label column holds class indices 0 .. K-1; it becomes one-hot rows when the
    input is declared ``[batch, K]`` (float) and integer indices when it is
    declared ``[batch]`` with dtype int64.
    """

    columns: list[Column] | Literal["rest"] | None = Field(
        default=None, description="Feature columns, by header name or 0-based index, in the "
                                  "order the input's last axis takes them; 'rest' is every "
                                  "column no other input uses.")
    label: Column | None = Field(default=None, description="One column (or, for .npz data, "
                                                          "one 1-D array) of class indices.")
    array: str | None = Field(default=None, description="For .npz data: the array (rows on "
                                                        "axis 0) that feeds the input whole.")
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
            raise ValueError("give exactly one of columns (CSV feature columns), array (an "
                             ".npz array) or label (class indices); found "
                             f"{', '.join(given) or 'none'}")
        if isinstance(self.columns, list) and not self.columns:
            raise ValueError("columns is empty: name at least one column")
        if self.label is not None and self.standardize:
            raise ValueError("standardize applies to feature columns, not to a label")
        return self


class TrainConfig(StrictModel):
    """How ``engine train`` trains the graph; each field is also a command-line option."""

    data: str | None = Field(default=None, description="A CSV file (with a header row to "
                                                       "name columns) or an .npz file of "
                                                       "arrays, relative to the spec.")
    inputs: dict[str, InputData] = Field(
        default_factory=dict, description="Graph input -> the data that feeds it.")
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig,
                                       description="sgd, momentum or adam.")
    lr: float = Field(default=0.01, gt=0, allow_inf_nan=False, description="Learning rate.")
    batch_size: int = Field(default=32, gt=0, description="Rows per mini-batch; the last "
                                                           "batch of an epoch may be smaller.")
    epochs: int = Field(default=10, ge=0, description="Total number of passes over the "
                                                      "training rows (a resumed run counts the "
                                                      "epochs already done).")
    shuffle: bool = Field(default=True, description="Visit the training rows in a new random "
                                                    "order each epoch.")
    seed: int | None = Field(default=None, description="Seed of the parameters' init, the "
                                                       "split and the batch order; default: "
                                                       "the spec's seed.")
    val_split: float = Field(default=0.2, ge=0, lt=1, description="Fraction of the rows held "
                                                                  "out for validation.")
