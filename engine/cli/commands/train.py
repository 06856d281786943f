"""``engine train SPEC``: train the graph as its ``train:`` section says, options overriding it."""

from __future__ import annotations

import argparse
import signal
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Annotated, Any, NamedTuple, Union, get_args, get_origin

import numpy as np
from pydantic import BaseModel, ValidationError
from rich.console import Console

from engine.cli.commands.common import (
    add_backend_options,
    add_load_options,
    backend_from_args,
    load_spec,
    print_json,
    require_suffix,
)
from engine.cli.diagnostics import count
from engine.cli.terminal import unescaped
from engine.errors import DataError, SpecError, UsageError
from engine.graph.lint import gradient_reach
from engine.graph.model import Graph
from engine.io.arrays import require_file
from engine.io.atomic import check_writable
from engine.io.lock import exclusive
from engine.io.trained import check_scaling, fit_parameters
from engine.runtime.backends import Backend
from engine.spec.paths import Refused, confine
from engine.spec.source import parse_yaml
from engine.train.checkpoint import Checkpoint, best_path, load_checkpoint
from engine.train.data import load_dataset
from engine.train.loop import NoProgress, Outcome, Trainer
from engine.train.plot import plot_history, pyplot
from engine.train.progress import BarProgress, split_metrics
from schemas.train import TrainConfig

HELP = "train the graph's parameters on data, as the spec's train: section says"

class Override(NamedTuple):
    """A command-line option that overrides one field of the ``train:`` section."""

    option: str  # --batch-size
    path: tuple[str, ...]  # ("batch_size",), or ("optimizer", "momentum")
    kind: type  # str, int, float or bool
    help: str


#: Options not named after their field alone, where that would be unclear.
_RENAMED = {("early_stopping", "metric"): "--stop-metric",
            ("metrics", "prediction"): "--metrics-prediction",
            ("metrics", "target"): "--metrics-target"}


def _overrides() -> tuple[Override, ...]:
    """One option per scalar field of ``TrainConfig`` and of the models inside it, read off
    the models (``batch_size`` is ``--batch-size``), so no field can lack its option.  A
    model's ``name`` has its own option (``_NAMED``); ``inputs`` and lists, ``--set``."""
    fields = []
    for name, field in TrainConfig.model_fields.items():
        fields.append(((name,), field))
        inner = _model_of(field.annotation)
        if inner is not None:
            fields += [((name, sub), f) for sub, f in inner.model_fields.items() if sub != "name"]
    overrides = []
    for path, field in fields:
        kind = _scalar_kind(field.annotation)
        if kind is not None:
            about = (field.description or "").rstrip(".").replace("%", "%%")
            option = _RENAMED.get(path, "--" + path[-1].replace("_", "-"))
            overrides.append(Override(option, path, kind,
                                      f"{about} (overrides train.{'.'.join(path)})"))
    return tuple(overrides)


def _members(annotation: Any) -> list[Any]:
    """The types of a field, ``None`` left out: ``int | None`` is ``[int]``."""
    union = get_origin(annotation) in (Union, types.UnionType)
    members = get_args(annotation) if union else (annotation,)
    return [get_args(m)[0] if get_origin(m) is Annotated else m  # Seed is an annotated int
            for m in members if m is not type(None)]


def _scalar_kind(annotation: Any) -> type | None:
    """str, int, float or bool for a field of that type (or that type or None), else None."""
    members = _members(annotation)
    return members[0] if len(members) == 1 and members[0] in (str, int, float, bool) else None


def _model_of(annotation: Any) -> type[BaseModel] | None:
    members = _members(annotation)
    model = members[0] if len(members) == 1 else None
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


_OVERRIDES = _overrides()

#: Options that choose a named model, such as ``--optimizer adam`` (its other settings take
#: their defaults unless given too): (option, field, names, default name).
_NAMED = tuple(
    (f"--{name}", name, get_args(model.model_fields["name"].annotation),
     model.model_fields["name"].default)
    for name, field in TrainConfig.model_fields.items()
    if (model := _model_of(field.annotation)) is not None and "name" in model.model_fields)

EPILOG = """\
examples:
  python -m engine train graphs/mlp.yaml
  python -m engine train graphs/mlp.yaml --epochs 20 --lr 0.05 --optimizer momentum --save p.npz
  python -m engine train graphs/mlp.yaml --resume p.npz --epochs 40 --save p.npz --plot loss.png
  python -m engine train graphs/mlp.yaml --set inputs.x.standardize=false --json
  python -m engine train graphs/digits.yaml --weight-decay 0.05 --patience 5 --save p.npz
  python -m engine train graphs/mlp.yaml --schedule cosine --warmup-epochs 2 --clip-grad-norm 1

Every field of the train: section can be overridden: the options above, or --set for any
field (its value is YAML). --data, --val-data and --test-data are relative to the current
folder; the same fields in the spec are relative to the spec. Exit codes: 0 done, 1 spec or
data error, 2 usage error, 130 interrupted (Ctrl-C stops after the last complete epoch,
which --save has written)."""


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "train", help=HELP, description=HELP + ".", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec", type=Path, help="the YAML graph spec, with a train: section")
    add_load_options(parser)
    add_backend_options(parser)
    for override in _OVERRIDES:
        dest = "override_" + override.path[-1]
        if override.kind is bool:
            parser.add_argument(override.option, action=argparse.BooleanOptionalAction,
                                dest=dest, default=None, help=override.help)
        else:
            parser.add_argument(override.option, type=override.kind, dest=dest,
                                metavar=override.path[-1].upper(), help=override.help)
    for option, field, names, _default in _NAMED:
        parser.add_argument(option, choices=names, dest="override_name_" + field,
                            help=f"override train.{field} (its settings take their defaults "
                                 "unless given too)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        dest="set_fields", type=_set_argument,
                        help="override any field of train:, e.g. inputs.x.standardize=false; "
                             "repeatable")
    parser.add_argument("--save", type=Path, metavar="PARAMS.npz",
                        help="write parameters, optimizer state and RNG state after every "
                             "epoch, atomically")
    parser.add_argument("--resume", type=Path, metavar="PARAMS.npz",
                        help="continue from a checkpoint that --save wrote")
    parser.add_argument("--plot", type=Path, metavar="LOSS.png",
                        help="draw the train and validation loss per epoch (.png, .svg or .pdf;"
                             " needs matplotlib)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON document at the end instead of the summary")


def _set_argument(text: str) -> tuple[tuple[str, ...], Any]:
    field, sep, value = text.partition("=")
    if not sep or not field:
        raise argparse.ArgumentTypeError(f"expected FIELD=VALUE, got {text!r}")
    try:  # read as a spec is read: 1e-3 is a number, tags and huge integers are refused
        parsed, _ = parse_yaml(value, "--set") if value.strip() else (None, None)
    except SpecError as exc:
        why = "; ".join(p.message for p in exc.problems)
        raise argparse.ArgumentTypeError(f"{text!r}: the value is not YAML ({why})") from None
    return tuple(field.split(".")), parsed


def run(args: argparse.Namespace) -> int:
    if args.save is not None:
        require_suffix("--save", args.save, (".npz",))
    graph = load_spec(args)
    config = resolve_config(graph.spec.train, args)
    data_file = _check_ready(graph, config, args)
    backend = backend_from_args(args)  # a missing library is found before any data is read
    with exclusive(args.save, "engine train --save") if args.save is not None else \
            nullcontext():
        return _train(graph, config, data_file, args, backend)


def _train(graph: Graph, config: TrainConfig, data_file: Path, args: argparse.Namespace,
           backend: Backend) -> int:
    """Resume, read the data, train and report; ``--save``'s file is locked meanwhile."""
    val_file, test_file = (None if value is None else _data_file(graph, args, field, value)
                           for field, value in (("val_data", config.val_data),
                                                ("test_data", config.test_data)))
    checkpoint = _checkpoint(graph, config, args)
    seed = checkpoint.seed if checkpoint is not None else \
        config.seed if config.seed is not None else graph.spec.seed
    dataset = load_dataset(graph, config, data_file, seed, val_file=val_file,
                           test_file=test_file, backend=backend)
    trainer = Trainer(graph, config, dataset, seed, save=args.save, backend=backend)
    if checkpoint is not None:
        try:
            trainer.resume(checkpoint, _best_checkpoint(args.resume, graph.max_bytes))
        except DataError as exc:
            raise DataError(f"{args.resume}: {exc}") from None
    show_bar = sys.stdout.isatty() and not args.json
    with _stop_on_interrupt() as stop, \
            (_bar(config.epochs) if show_bar else nullcontext(NoProgress())) as progress:
        outcome = trainer.run(progress, stop)
    if args.plot is not None:
        plot_history(args.plot, outcome.history, f"{graph.spec.name}: loss per epoch")
    if args.json:
        _print_json(outcome, trainer, args)
    else:
        _print_summary(outcome, trainer, args)
    if outcome.interrupted:
        kept = f"; {args.save} holds it (continue with --resume {args.save})" \
            if outcome.saved else ""
        print(f"interrupted: stopped after epoch {outcome.epochs} of {config.epochs}{kept}",
              file=sys.stderr)
        return 130
    return 0


def _bar(epochs: int) -> BarProgress:
    """The progress bar, drawing with its own escape sequences on the real stdout."""
    return BarProgress(epochs, Console(file=unescaped(sys.stdout)))


def _check_ready(graph: Graph, config: TrainConfig, args: argparse.Namespace) -> Path:
    """Everything that can stop a run, checked before any data is read; returns the data file."""
    if args.plot is not None:
        pyplot(args.plot)  # a bad suffix or a missing matplotlib is found before training
    for output in (args.save, args.plot):  # and so is a typo in a path
        if output is not None:
            check_writable(output)
    if config.data is None:
        raise DataError(f"{args.spec}: no data to train on: set train.data in the spec or pass "
                        "--data FILE")
    if not config.inputs:
        raise DataError(f"{args.spec}: train.inputs is empty: say which columns feed which "
                        "input, for example inputs: {x: {columns: rest}, y: {label: class}}")
    if graph.loss is None:
        raise DataError(f"{args.spec}: the spec declares no loss, so there is nothing to "
                        "minimise; add loss: NODE")
    if not any(graph.values[name].kind == "parameter"
               for name in gradient_reach(graph, graph.loss)):
        raise DataError(f"{args.spec}: no parameter gets a gradient from the loss "
                        f"{graph.loss!r}, so training has nothing to change; declare "
                        "parameters: and use them on the way to the loss")
    return _data_file(graph, args, "data", config.data)


def _data_file(graph: Graph, args: argparse.Namespace, field: str, value: str) -> Path:
    """``train.FIELD``'s file: an option's path is relative to the current folder, the
    spec's to the spec; a missing one is an error before any data is read."""
    given = getattr(args, "override_" + field)
    if given:
        data_file = Path(given)
        require_file(data_file, "--" + field.replace("_", "-"))
        return data_file
    try:
        _, data_file = confine(value, graph.base_dir, graph.import_roots)
    except Refused as exc:
        raise SpecError([graph.source.problem(("train", field),
                                              f"train {field.replace('_', ' ')}: {exc}")]) \
            from None
    return data_file


def _checkpoint(graph: Graph, config: TrainConfig,
                args: argparse.Namespace) -> Checkpoint | None:
    """The checkpoint to resume from, checked against the graph and this run's settings."""
    if args.resume is None:
        return None
    checkpoint = load_checkpoint(args.resume, graph.max_bytes)
    try:
        np.random.default_rng().bit_generator.state = checkpoint.rng_state  # the loop's kind
    except (ValueError, TypeError, KeyError, OverflowError) as exc:
        raise DataError(f"{args.resume}: unreadable checkpoint metadata ({exc}); --resume takes "
                        "a file that engine train --save wrote") from None
    check_scaling(args.resume, checkpoint.scaling, graph)
    if args.override_seed is not None and args.override_seed != checkpoint.seed:
        raise UsageError(f"--seed {args.override_seed}: {args.resume} was trained with seed "
                         f"{checkpoint.seed}, which fixes its split and batch order")
    if checkpoint.optimizer != config.optimizer.name:
        raise DataError(f"{args.resume}: trained with {checkpoint.optimizer}, but this run uses "
                        f"{config.optimizer.name}; pass --optimizer {checkpoint.optimizer}")
    checkpoint.params = fit_parameters(args.resume, checkpoint.params, graph)
    return checkpoint


def _best_checkpoint(resumed: Path, max_bytes: int) -> Checkpoint | None:
    """The best epoch that early stopping kept beside ``resumed``, if it is there."""
    best = best_path(resumed)
    return load_checkpoint(best, max_bytes) if best.is_file() else None


def resolve_config(spec_config: TrainConfig | None, args: argparse.Namespace) -> TrainConfig:
    """The spec's train: section with the command line's overrides, validated again."""
    data: dict[str, Any] = (spec_config.model_dump(exclude_unset=True)
                            if spec_config is not None else {})
    given: list[str] = []
    for option, field, _names, default in _NAMED:
        chosen = getattr(args, "override_name_" + field)
        if chosen is None:
            continue
        current = data.get(field, {})
        if (current if isinstance(current, str) else current.get("name", default)) != chosen:
            data[field] = {"name": chosen}
        given.append(f"{option} {chosen}")
    for option, path, _kind, _help in _OVERRIDES:
        value = getattr(args, "override_" + path[-1])
        if value is not None:
            _assign(data, path, value, option)
            given.append(f"{option} {value}")
    for path, value in args.set_fields:
        _assign(data, path, value, "--set")
        given.append(f"--set {'.'.join(path)}")
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"train.{'.'.join(str(p) for p in e['loc'])}: "
                             f"{str(e['msg']).removeprefix('Value error, ')}"
                             for e in exc.errors(include_url=False))
        raise UsageError(f"{problems} (after the command line's {', '.join(given)})") from None


def _assign(data: dict[str, Any], path: tuple[str, ...], value: Any, option: str) -> None:
    target = data
    for key in path[:-1]:
        child = target.setdefault(key, {})
        if isinstance(child, str) and key in ("optimizer", "schedule"):  # a bare name
            child = target[key] = {"name": child}
        if not isinstance(child, dict):
            raise UsageError(f"{option} {'.'.join(path)}: train.{key} is not a mapping")
        target = child
    target[path[-1]] = value


@contextmanager
def _stop_on_interrupt() -> Iterator[Any]:
    """Turn the first Ctrl-C into a request to stop at the next batch; a second one aborts."""
    requested = False

    def handler(signum: int, frame: Any) -> None:
        nonlocal requested
        requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread: signals cannot be caught here
        yield lambda: False
        return
    try:
        yield lambda: requested
    finally:
        signal.signal(signal.SIGINT, previous)


def _print_summary(outcome: Outcome, trainer: Trainer, args: argparse.Namespace) -> None:
    config, dataset = trainer.config, trainer.dataset
    opt = config.optimizer
    extras = [f"{opt.name} (lr {config.lr:g}"]
    if config.schedule.name != "constant" or config.schedule.warmup_epochs:
        warmup = config.schedule.warmup_epochs
        extras.append(f"{config.schedule.name} schedule" +
                      (f" after {warmup:g} warmup epoch{'s' if warmup != 1 else ''}"
                       if warmup else ""))
    if config.weight_decay:
        extras.append(f"weight decay {config.weight_decay:g}")
    if config.clip_grad_norm is not None:
        extras.append(f"gradient norm clipped to {config.clip_grad_norm:g}")
    extras.append(f"batch size {config.batch_size})")
    print(f"{trainer.graph.spec.name} ({args.spec}): {count(outcome.epochs, 'epoch')} of "
          f"{', '.join(extras)}, seed {trainer.seed}, {outcome.seconds:.2f} s")
    validation = f"{_shown(dataset.val_file)}, " if dataset.val_file is not None else ""
    test = f", {_shown(dataset.test_file)}: {count(dataset.n_test, 'test row')}" \
        if dataset.test_file is not None else ""
    print(f"data: {_shown(dataset.file)}, {count(dataset.n_train, 'training row')}, "
          f"{validation}{count(dataset.n_val, 'validation row')}{test}")
    per_row = trainer.predictions_per_row  # a class per position of a sequence
    rows = {"train": dataset.n_train * per_row, "val": dataset.n_val * per_row,
            "test": dataset.n_test * per_row}
    last = {key: outcome.last(key) for key in outcome.history}
    last.update(outcome.test)
    for part, values in split_metrics(last):
        line = f"{part:<5} " + "  ".join(
            f"{name} {value:.4f}" if name != "accuracy" else
            f"accuracy {value:.3f} ({round(value * rows[part])}/{rows[part]})"
            for name, value in values.items())
        print(line)
    rule = config.early_stopping
    if rule is not None and outcome.best_epoch is not None:
        why = f"stopped early: {rule.metric} did not improve for " \
              f"{count(rule.patience, 'epoch')}; " if outcome.stopped_early else ""
        kept = f" ({best_path(args.save)})" if outcome.saved else ""
        tested = "; the test rows were measured with it" if outcome.test else ""
        print(f"{why}best epoch {outcome.best_epoch}{kept}{tested}")
    if outcome.saved:
        print(f"saved parameters to {args.save}")
    if args.plot is not None:
        print(f"plotted the loss curve to {args.plot}")


def _shown(path: Path) -> Path:
    """``path`` relative to the current folder when it lies below it (data paths in the
    spec are resolved, hence absolute), else as it is."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def _print_json(outcome: Outcome, trainer: Trainer, args: argparse.Namespace) -> None:
    document = {
        "epochs": outcome.epochs,
        **{key: outcome.last(key) for key in trainer.keys},
        **outcome.test,
        "train_rows": trainer.dataset.n_train,
        "val_rows": trainer.dataset.n_val,
        **({"test_rows": trainer.dataset.n_test} if trainer.dataset.test_file else {}),
        "seed": trainer.seed,
        "optimizer": trainer.config.optimizer.name,
        "best_epoch": outcome.best_epoch,
        "stopped_early": outcome.stopped_early,
        "interrupted": outcome.interrupted,
        "seconds": outcome.seconds,
        "saved": str(args.save) if outcome.saved else None,
        "history": outcome.history,
    }
    print_json(document)
