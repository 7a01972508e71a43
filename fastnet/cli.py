"""The ``fastnet`` command line (also ``python -m fastnet``).

Subcommands::

    fastnet train      train the article's full recipe (bundled digits by default)
    fastnet diagnose   print the article's experiments; or diagnose a saved model
    fastnet lr-find    learning-rate range test: which lr to train with
    fastnet bench      time fastnet against NumPy and PyTorch
    fastnet export     write a saved model as ONNX, a PyTorch state dict or safetensors

:func:`main` takes the argument list and returns the exit code:

* 0: success (also when stdout was closed early, e.g. by ``| head``: the
  rest of the output is dropped, the files are still written);
* 2: a bad option, a bad or missing file, data that cannot be trained on, an
  output directory that cannot be written (found before training), or a
  model too large for this machine's memory -- with a one-line message on
  stderr and no traceback;
* 130: Ctrl-C.  One Ctrl-C during training stops after the current batch and
  still saves the model and history (restored to the best epoch) before
  exiting 130; a second one stops at once, saving nothing.

The article is "Learn AI Series (#40) - Training Neural Networks - Practical Challenges".
"""
import argparse
import contextlib
import errno
import inspect
import json
import math
import os
import sys
import time
import warnings

import numpy as np

from fastnet import _threads, _validation, experiments, optim, plotting

__all__ = ["build_parser", "main"]


DEFAULTS = {
    "layers": "256,128",
    "epochs": 100,
    "batch_size": 64,
    "lr": 3e-3,
    "optimizer": "adamw",
    "schedule": "warmup_cosine",
    "dropout": 0.3,
    "patience": 15,
    "seed": 0,
    "test_size": 0.25,
    "val_size": 0.15,
    "split_seed": 0,
    "out": "fastnet-out",
}


class CommandError(Exception):
    """A user error found by a subcommand: reported in one line, exit code 2."""


# ---------------------------------------------------------------------------
# argument parsing
# ---------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line: ``prog: error: msg (see prog --help)``."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _int_at_least(low, high=None):
    """argparse type: an int in [low, high], checked as the library checks ints."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        problem = _validation.integer_problem(value, low, high)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value
    parse.__name__ = "int"
    return parse


def _float_in(low, high, *, low_open=False, high_open=False):
    """argparse type: a finite float in the range, checked as the library checks reals."""
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        problem = _validation.range_problem(value, low, high, low_open, high_open)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value
    parse.__name__ = "number"
    return parse


def _layer_list(text):
    text = text.strip()
    if not text:
        return []
    try:
        sizes = [int(part) for part in text.replace(" ", "").split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated widths such as 256,128, got {text!r}") from None
    if any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"layer widths must be >= 1, got {text!r}")
    return sizes


def _experiment_list(text):
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in experiments.EXPERIMENTS]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"unknown experiment {', '.join(bad) or repr(text)}; choose from "
            f"{','.join(experiments.EXPERIMENTS)}")
    return names


_EPILOG = """\
what the commands do:
  train     Train the full recipe (He init, batch norm, dropout 0.3, AdamW,
            warmup + cosine lr, early stopping) on the digits that ship with
            fastnet, or on --data FILE (.npz, .csv, .npy or .parquet). Prints one line per
            epoch and the test accuracy; saves model.npz, history.json and
            training_curves.png in --out (default ./fastnet-out).
  diagnose  Print the article's experiments: vanishing gradients through
            sigmoid layers, small/large/He init over 20 ReLU layers, batch
            norm over 15 layers, dropout, lr schedules, early stopping.
            --plot DIR saves a PNG per experiment. --model FILE [--data FILE]
            reports gradient flow and dead ReLUs per layer of a saved model.
  lr-find   Learning-rate range test (Smith 2017) on the training split:
            the loss over a geometric lr ramp, the suggested lr (steepest
            descent of the smoothed loss) and lr_find.png in --out.
  bench     Time one training epoch of fastnet against NumPy, PyTorch and JAX.
  export    Write a saved model as ONNX, a PyTorch state dict or safetensors.

examples:
  fastnet train                          # about 10 s, no download
  fastnet train --layers 512,256 --epochs 60 --out run2
  fastnet diagnose --only init,batchnorm --plot plots
  fastnet diagnose --model fastnet-out/model.npz
  fastnet lr-find --optimizer adamw      # then: fastnet train --lr <suggested>

Run 'fastnet COMMAND --help' for the options of a command.
Exit status: 0 success (also when stdout is closed early, e.g. by | head);
2 bad option, file, data, output directory or a model too large for memory
(a one-line message, found before training); 130 Ctrl-C (one Ctrl-C during
training still saves the model and history, restored to the best epoch).
"""


def _add_header_argument(p):
    p.add_argument("--header", choices=("auto", "yes", "no"), default="auto",
                   help="whether the first row of a .csv names the columns (default auto: "
                        "yes when it is not all numbers, or reads 0,1,2,... / 1,2,3,... as "
                        "pandas writes unnamed columns over data it cannot be a row of)")


def _add_data_and_model_arguments(p):
    """Options `train` and `lr-find` share: data, split, model and optimizer."""
    d = DEFAULTS
    p.add_argument("--data", metavar="FILE",
                   help=".npz with arrays X and y, or .csv, .npy (2-D, memory-mapped) or "
                        ".parquet (needs pyarrow) with a label column "
                        "(default: the bundled digits, pixels / 16)")
    p.add_argument("--label-column", metavar="NAME",
                   help="label column of a .csv, .npy or .parquet: a header name or a "
                        "0-based index "
                        "(default: the column named 'label', else the last one)")
    _add_header_argument(p)
    p.add_argument("--layers", type=_layer_list, default=_layer_list(d["layers"]),
                   metavar="W1,W2,...",
                   help=f"hidden layer widths (default {d['layers']})")
    p.add_argument("--batch-size", type=_int_at_least(1), default=d["batch_size"],
                   help=f"mini-batch size (default {d['batch_size']})")
    p.add_argument("--optimizer", choices=tuple(optim.OPTIMIZERS),
                   default=d["optimizer"], help=f"optimizer (default {d['optimizer']})")
    p.add_argument("--weight-decay", type=_float_in(0, None), default=None,
                   help="weight decay (default: the optimizer's, 0.01 for adamw, "
                        "0 for sgd/adam)")
    p.add_argument("--dropout", type=_float_in(0, 1, high_open=True), default=d["dropout"],
                   help=f"dropout rate after each hidden layer (default {d['dropout']})")
    p.add_argument("--no-batch-norm", action="store_true",
                   help="no batch normalisation (hidden layers get a bias instead)")
    p.add_argument("--seed", type=_int_at_least(0, 2**64 - 1), default=d["seed"],
                   help=f"seed of the weights, shuffling and dropout (default {d['seed']})")
    p.add_argument("--threads", type=_int_at_least(1), default=None,
                   help="threads of fastnet's kernels (default: OMP_NUM_THREADS or the "
                        "physical cores); results are the same for any count")
    p.add_argument("--test-size", type=_float_in(0, 1, low_open=True, high_open=True),
                   default=d["test_size"],
                   help=f"fraction held out for the test accuracy (default "
                        f"{d['test_size']}, stratified, fixed seed {d['split_seed']})")
    p.add_argument("--standardize", action="store_true",
                   help="scale features to zero mean, unit variance (training "
                        "statistics); the bundled digits are already in [0, 1]")


def build_parser():
    """The argparse parser of ``fastnet`` and its subcommands."""
    parser = _Parser(
        prog="fastnet",
        description="fastnet: fast, reproducible CPU training of dense neural networks "
                    "with the modern recipe (He init, batch norm, dropout, warmup + cosine "
                    "learning rate, early stopping).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_EPILOG)
    from fastnet import __version__
    parser.add_argument("--version", action="version", version=f"fastnet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for add in (_add_train_parser, _add_diagnose_parser, _add_lr_find_parser,
                _add_bench_parser):
        add(sub)
    from fastnet.export import add_export_parser
    add_export_parser(sub)
    return parser


def _command(sub, func, help):
    """The subparser of the command `func` runs (``cmd_lr_find`` -> ``lr-find``): its
    --help description is the first paragraph of the docstring, its epilog the second
    (examples)."""
    name = func.__name__.removeprefix("cmd_").replace("_", "-")
    description, _, epilog = inspect.cleandoc(func.__doc__).partition("\n\n")
    parser = sub.add_parser(name, help=help, description=" ".join(description.split()),
                            epilog=" ".join(epilog.split()) or None)
    parser.set_defaults(func=func)
    return parser


def _add_output_arguments(p, files):
    """--out and --no-plot of a command that writes `files` and a PNG."""
    d = DEFAULTS
    p.add_argument("--out", metavar="DIR", default=d["out"],
                   help=f"output directory for {files} (default ./{d['out']})")
    p.add_argument("--no-plot", action="store_true", help="do not write the PNG")


def _add_train_parser(sub):
    d = DEFAULTS
    train = _command(sub, cmd_train,
                     "train the full modern recipe (default: the bundled digits)")
    _add_data_and_model_arguments(train)
    train.add_argument("--epochs", type=_int_at_least(1), default=d["epochs"],
                       help=f"maximum number of epochs (default {d['epochs']})")
    train.add_argument("--lr", type=_float_in(0, None, low_open=True), default=d["lr"],
                       help=f"peak learning rate (default {d['lr']})")
    train.add_argument("--schedule",
                       choices=("warmup_cosine", "cosine", "step", "constant", "plateau"),
                       default=d["schedule"],
                       help="learning-rate schedule (default warmup_cosine: linear warmup "
                            "over 5%% of the epochs, then cosine decay)")
    train.add_argument("--patience", type=_int_at_least(0), default=d["patience"],
                       help=f"early-stopping patience in epochs, 0 to disable "
                            f"(default {d['patience']})")
    train.add_argument("--val-size", type=_float_in(0, 1, low_open=True, high_open=True),
                       default=d["val_size"],
                       help=f"fraction of the training rows used for validation / early "
                            f"stopping (default {d['val_size']})")
    _add_output_arguments(train, "model.npz, history.json and training_curves.png")
    train.add_argument("-q", "--quiet", action="store_true",
                       help="no progress bar or per-epoch lines")


def _add_diagnose_parser(sub):
    diag = _command(sub, cmd_diagnose,
                    "the article's experiments, or gradient flow / dead ReLUs of a model")
    diag.add_argument("--plot", metavar="DIR",
                      help="also save one PNG per experiment (or per report) in DIR")
    diag.add_argument("--only", type=_experiment_list, metavar="NAMES",
                      help="comma-separated subset of " + ",".join(experiments.EXPERIMENTS))
    diag.add_argument("--seed", type=_int_at_least(0), default=0,
                      help="seed of the sigmoid experiment's random pre-activations "
                           "(the article leaves them unseeded; default 0)")
    diag.add_argument("--model", metavar="FILE",
                      help="a model saved by 'fastnet train' or MLP.save")
    diag.add_argument("--data", metavar="FILE",
                      help="with --model: .npz (X, y) or .csv data to diagnose on "
                           "(default: the bundled digits)")
    diag.add_argument("--label-column", metavar="NAME",
                      help="label column of a .csv (as for train)")
    _add_header_argument(diag)


def _add_lr_find_parser(sub):
    finder = _command(sub, cmd_lr_find, "learning-rate range test: which lr to train with")
    _add_data_and_model_arguments(finder)
    finder.add_argument("--start-lr", type=_float_in(0, None, low_open=True), default=1e-7,
                        help="first lr of the ramp (default 1e-7)")
    finder.add_argument("--end-lr", type=_float_in(0, None, low_open=True), default=10.0,
                        help="last lr of the ramp (default 10)")
    finder.add_argument("--steps", type=_int_at_least(3), default=100,
                        help="mini-batches of the ramp (default 100)")
    _add_output_arguments(finder, "lr_find.png and lr_find.json")


def _add_bench_parser(sub):
    bench = _command(sub, cmd_bench, "time one training epoch: fastnet vs NumPy vs PyTorch")
    from fastnet.bench import add_arguments
    add_arguments(bench)


def main(argv=None):
    """Run the command line with `argv` (default ``sys.argv[1:]``); return the exit code."""
    with _stdout_may_close():
        return _run(argv)


def _run(argv):
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:          # --help, --version, or a usage error (code 2)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    if args.command is None:
        parser.print_help()
        return 0
    prog = f"fastnet {args.command}"
    try:
        return args.func(args) or 0
    except (CommandError, ValueError, OSError, TypeError) as exc:
        _error(prog, exc)
        return 2
    except MemoryError:
        _error(prog, CommandError("out of memory: try smaller --layers or --batch-size"))
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


class _DroppingClosedStdout:
    """sys.stdout that drops its output once the reader has gone (``| head``), so that a
    closed pipe never interrupts training or the writing of its results."""

    def __init__(self, stream):
        self._stream = stream
        self.closed_early = False

    def _closed(self):
        self.closed_early = True
        # the interpreter flushes the real stream at exit: let that go nowhere quietly
        with contextlib.suppress(OSError, ValueError, AttributeError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)

    def write(self, text):
        if not self.closed_early:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._closed()
        return len(text)

    def flush(self):
        if not self.closed_early:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._closed()

    def __getattr__(self, name):
        return getattr(self._stream, name)


@contextlib.contextmanager
def _stdout_may_close():
    stdout = sys.stdout
    sys.stdout = guarded = _DroppingClosedStdout(stdout)
    try:
        yield
    finally:
        guarded.flush()
        sys.stdout = stdout


def _error(prog, exc):
    if isinstance(exc, FileNotFoundError) and exc.filename \
            and exc.strerror in (None, os.strerror(errno.ENOENT)):
        message = f"no such file: {exc.filename}"
    elif isinstance(exc, OSError) and exc.strerror and exc.filename:
        message = f"{exc.filename}: {exc.strerror}"
    else:
        message = str(exc) or type(exc).__name__
    message = " ".join(message.split())
    print(f"{prog}: error: {message}", file=sys.stderr)


# ---------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------

def _load_data(args):
    """(X, y, classes, description) from ``--data``, or the bundled digits."""
    from fastnet import datasets
    if args.data is None:
        for option, given in (("--label-column", args.label_column is not None),
                              ("--header", args.header != "auto")):
            if given:
                raise CommandError(f"{option} needs --data")
        X, y = datasets.load_digits()
        return X, y, np.arange(10), "digits (bundled with fastnet, pixels / 16)"
    header = {"auto": "auto", "yes": True, "no": False}[args.header]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        X, y, classes = datasets.load_file(args.data, args.label_column, header=header,
                                           copy=False)
    for warning in caught:
        print(f"fastnet {args.command}: warning: {warning.message}", file=sys.stderr)
    return X, y, classes, args.data


def _class_names(classes):
    return [c.item() if hasattr(c, "item") else c for c in classes]


# ---------------------------------------------------------------------------
# train
# ---------------------------------------------------------------------------

def _schedule(args):
    from fastnet import schedules
    lr, epochs = args.lr, args.epochs
    if args.schedule == "warmup_cosine":
        warmup = min(max(1, round(0.05 * epochs)), epochs - 1)
        text = (f"warmup_cosine ({warmup} warmup epoch{'s' if warmup != 1 else ''}, "
                f"cosine to epoch {epochs})")
        return schedules.WarmupCosine(lr, warmup, epochs), text
    if args.schedule == "cosine":
        return schedules.CosineAnnealing(lr, epochs), f"cosine (over {epochs} epochs)"
    if args.schedule == "step":
        step = max(1, round(0.3 * epochs))
        plural = "s" if step != 1 else ""
        return schedules.StepDecay(lr, 0.5, step), f"step (x0.5 every {step} epoch{plural})"
    if args.schedule == "plateau":
        patience = max(2, args.patience // 3) if args.patience else 5
        return (schedules.ReduceLROnPlateau(lr, factor=0.5, patience=patience),
                f"plateau (x0.5 after {patience} epochs without val_loss improvement)")
    return None, "constant"


def _split_rows(args, X, y, source, *, validation):
    """The fixed, stratified splits of the rows of X as index sets (no copies): (the
    training rows, or with `validation` the fitting and validation rows, then the test
    rows), each an ``_inputs.Rows`` with its labels, and the standardisation of the
    (fitting) rows' statistics or None (``--standardize``: applied as the rows are read,
    see ``_inputs.Shards``)."""
    from fastnet import _inputs, datasets
    _check_split(X.shape[0], source, args.test_size, args.val_size if validation else None)
    train, test = datasets.split_indices(y, args.test_size, seed=DEFAULTS["split_seed"])
    parts = [train]
    if validation:
        fit, val = datasets.split_indices(y[train], args.val_size,
                                          seed=DEFAULTS["split_seed"] + 1)
        parts = [train[fit], train[val]]
    scaler = None
    if args.standardize:
        mean, std = _inputs.column_moments(_inputs.Rows(X, parts[0]))
        std[std == 0] = 1.0
        scaler = {"mean": mean.tolist(), "std": std.tolist()}
        X = _inputs.Shards([X], np.float64, center=mean, scale=std)
    return [(_inputs.Rows(X, rows), y[rows]) for rows in parts + [test]], scaler


def _describe_run(args, sizes):
    parts = [f"MLP({sizes})", "ReLU", "He init",
             "no batch norm" if args.no_batch_norm else "batch norm",
             f"dropout {args.dropout:g}"]
    return ", ".join(parts)


def _output_dir(option, path, first_file):
    """`path` created if needed and shown to accept new files, before any work: its
    absolute path.  CommandError naming `option` otherwise."""
    from fastnet import _io
    out = os.path.abspath(path)
    if os.path.exists(out) and not os.path.isdir(out):
        raise CommandError(f"{option} {path} exists and is not a directory")
    try:
        os.makedirs(out, exist_ok=True)
        _io.check_writable(os.path.join(out, first_file))
    except OSError as exc:
        raise CommandError(f"{option} {path}: cannot write there ({exc.strerror or exc})") \
            from None
    return out


def _check_split(n, source, test_size, val_size=None):
    """The rows the test split (and the validation split of the rest) leave: at least 2
    to fit on, 1 to test and 1 to validate.  CommandError naming the options otherwise."""
    n_test = math.ceil(test_size * n)
    n_train = n - n_test
    n_val = 0 if val_size is None else math.ceil(val_size * n_train)
    n_fit = n_train - n_val
    if n_fit >= 2 and n_test >= 1 and (val_size is None or n_val >= 1):
        return
    options = "--test-size" if val_size is None else "--test-size and --val-size"
    least = 3 if val_size is None else 4
    if n < least:
        raise CommandError(f"{source} has {n} rows: too few to hold out the test split and "
                           + ("" if val_size is None else "the validation split and ")
                           + f"keep 2 rows to train on ({options}); at least {least} rows "
                           "are needed")
    if val_size is None or n_train < 3:
        raise CommandError(f"--test-size {test_size:g} holds out {n_test} of the {n} rows, "
                           f"leaving {n_train}: too few to train on"
                           + ("" if val_size is None else " and validate")
                           + "; use a smaller --test-size")
    raise CommandError(f"--val-size {val_size:g} holds out {n_val} of the {n_train} "
                       f"training rows, leaving {n_fit} to train on (at least 2 are "
                       "needed); use a smaller --val-size")


def _physical_memory():
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def _check_model_size(args, sizes):
    """Refuse a model whose training state cannot fit in this machine's memory, before
    allocating it (widths such as 10**20 would also overflow the native layout)."""
    from fastnet.model import _parameter_counts
    n_params, _ = _parameter_counts(sizes, not args.no_batch_norm)
    # float32 parameters, gradients, two optimizer moments and the best weights kept
    needed = 5 * 4 * n_params
    memory = _physical_memory()
    limit = min(memory, 2**62) if memory else 2**62
    if needed > limit:
        have = f"this machine has {_gib(memory)}" if memory else "more than any array holds"
        raise CommandError(f"--layers {','.join(map(str, args.layers))}: the model {sizes} "
                           f"has {n_params:.3g} parameters and training it needs at least "
                           f"{_gib(needed)}; {have}")


def _gib(n_bytes):
    return f"{n_bytes / 2**30:.3g} GiB"


def cmd_train(args):
    """Train an MLP with the article's full recipe: He init, batch norm, dropout, AdamW,
    warmup + cosine learning rate, early stopping on a validation split. With no options it
    trains on the 8x8 digits that ship with fastnet, prints the test accuracy and saves the
    model, the history and a PNG of the training curves.

    Examples: 'fastnet train'; 'fastnet train --data my.csv --label-column species --layers
    64,32 --epochs 200'."""
    from fastnet import distributed
    # under mpirun -n N (N > 1) the ranks train together; rank 0 prints and writes files
    ranks = distributed.size() if distributed.launched_by_mpi() else 1
    if ranks > 1 and distributed.rank() != 0:
        with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
            return _train(args, ranks, root=False)
    return _train(args, ranks, root=True)


def _train(args, ranks, root):
    import fastnet
    from fastnet.callbacks import EarlyStopping

    t_start = time.perf_counter()
    X, y, classes, source = _load_data(args)
    n_classes = int(classes.size)
    ((X_fit, y_fit), (X_val, y_val), (X_test, y_test)), scaler = _split_rows(
        args, X, y, source, validation=True)

    sizes = [int(X.shape[1])] + list(args.layers) + [n_classes]
    _check_model_size(args, sizes)
    schedule, schedule_text = _schedule(args)
    stopper = EarlyStopping(patience=args.patience) if args.patience else None
    # the results must have somewhere to go before the training they record
    out = _output_dir("--out", args.out, "model.npz") if root else None

    _print_training_plan(args, f"{source}: {X.shape[0]} rows, {X.shape[1]} features, "
                               f"{n_classes} classes",
                         (len(y_fit), len(y_val), len(y_test)), sizes, schedule_text,
                         stopper, ranks)

    verbose = 0 if args.quiet else (1 if sys.stderr.isatty() else 2)
    with _threads.optional_threads(args.threads):
        model = fastnet.MLP(sizes, batch_norm=not args.no_batch_norm, dropout=args.dropout,
                            init="he", seed=args.seed)
        t_fit = time.perf_counter()
        history = model.fit(X_fit, y_fit, epochs=args.epochs, batch_size=args.batch_size,
                            optimizer=args.optimizer, lr=args.lr,
                            weight_decay=args.weight_decay, schedule=schedule,
                            validation_data=(X_val, y_val), early_stopping=stopper,
                            seed=args.seed, verbose=verbose,
                            distributed=True if ranks > 1 else None)
        fit_seconds = time.perf_counter() - t_fit
        test = model.evaluate(X_test, y_test)
    n_correct = round(test["accuracy"] * len(y_test))
    ran = history.epochs
    exit_code = 130 if history.interrupted else 0

    if root:                       # saved first: nothing printed below can lose them
        model_path = os.path.join(out, "model.npz")
        model.save(model_path)
        history_path = os.path.join(out, "history.json")
        record = {
            "data": source, "classes": _class_names(classes), "layer_sizes": sizes,
            "options": {k: v for k, v in vars(args).items() if k not in ("func", "command")},
            "test_accuracy": test["accuracy"], "test_loss": test["loss"],
            "epochs": ran, "best_epoch": history.best_epoch,
            "stopped_epoch": history.stopped_epoch, "diverged": history.diverged,
            "interrupted": history.interrupted, "fit_seconds": fit_seconds,
            "history": history.history, "standardize": scaler,
        }
        with open(history_path, "w") as fh:
            json.dump(record, fh, indent=1, default=_json_default)

    print()
    print(_outcome(history, stopper))
    print(f"Test accuracy: {test['accuracy']:.4f} ({n_correct}/{len(y_test)}), "
          f"test loss {test['loss']:.4f}")
    print(f"Training time: {fit_seconds:.1f} s ({ran} epochs)")
    if not root:
        return exit_code
    print(f"Saved model:   {model_path}  (fastnet.load(path) reads it back)")
    print(f"Saved history: {history_path}")
    if not args.no_plot:
        png = os.path.join(out, "training_curves.png")
        name = "digits" if args.data is None else os.path.basename(args.data)
        title = (f"fastnet train on {name}: {_describe_run(args, sizes)}; test accuracy "
                 f"{test['accuracy']:.4f} ({n_correct}/{len(y_test)})")
        if plotting.training_history(history, png, title, stopped=stopper is not None):
            print(f"Saved curves:  {png}")
    print(f"Total time: {time.perf_counter() - t_start:.1f} s")
    if exit_code:
        print(f"fastnet train: interrupted; the model and history were saved in {out}",
              file=sys.stderr)
    return exit_code


def _print_training_plan(args, data, split, sizes, schedule_text, stopper, ranks):
    """What ``fastnet train`` is about to do, before it starts."""
    print(f"Data:      {data}")
    print(f"Split:     {split[0]} train / {split[1]} validation / {split[2]} test "
          f"(stratified)")
    print(f"Model:     {_describe_run(args, sizes)}")
    print(f"Training:  {args.optimizer} lr {args.lr:g}, {schedule_text}, batch "
          f"{args.batch_size}, up to {args.epochs} epochs, "
          + (f"early stopping (patience {args.patience})" if stopper else
             "no early stopping"))
    if ranks > 1:
        print(f"Parallel:  {ranks} MPI ranks, batch {args.batch_size} per rank "
              f"({args.batch_size * ranks} per step)")
    sys.stdout.flush()


def _outcome(history, stopper):
    """How a training run ended, in one line."""
    ran, best = history.epochs, history.best_epoch
    if history.diverged:
        return (f"Training diverged (NaN/inf loss) after {ran} epochs; restored the best "
                "weights. Try a lower --lr.")
    if history.interrupted:
        return (f"Interrupted (Ctrl-C) after {ran} epochs; restored the best weights (epoch "
                f"{(best or 0) + 1}).")
    if history.stopped_epoch is not None and stopper is not None:
        return (f"Early stopping after epoch {history.stopped_epoch + 1}: validation loss "
                f"best at epoch {best + 1} ({stopper.best_loss:.4f}); restored those weights.")
    return (f"Trained {ran} epochs; best validation loss at epoch "
            f"{(best or 0) + 1}" + ("; restored those weights." if stopper else "."))


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


# ---------------------------------------------------------------------------
# lr-find
# ---------------------------------------------------------------------------

def cmd_lr_find(args):
    """Learning-rate range test (Smith 2017): train the model for --steps mini-batches of the
    training split while the lr grows geometrically from --start-lr to --end-lr, stop when
    the smoothed loss diverges, and suggest the lr where the smoothed loss falls fastest.
    The model's weights are left as they were. Saves lr_find.png and lr_find.json in --out.

    Example: 'fastnet lr-find --optimizer adamw', then 'fastnet train --lr <suggested>'."""
    import fastnet

    if args.end_lr <= args.start_lr:
        raise CommandError(f"--end-lr ({args.end_lr:g}) must be larger than --start-lr "
                           f"({args.start_lr:g})")
    X, y, classes, source = _load_data(args)
    ((X_train, y_train), _), _ = _split_rows(args, X, y, source, validation=False)
    sizes = [int(X.shape[1])] + list(args.layers) + [int(classes.size)]
    _check_model_size(args, sizes)
    out = _output_dir("--out", args.out, "lr_find.json")
    print(f"Data:      {source}: {len(y_train)} training rows (test split held out)")
    print(f"Model:     {_describe_run(args, sizes)}")
    print(f"Range:     {args.optimizer}, lr {args.start_lr:g} .. {args.end_lr:g} over "
          f"{args.steps} steps, batch {args.batch_size}")
    with _threads.optional_threads(args.threads):
        model = fastnet.MLP(sizes, batch_norm=not args.no_batch_norm, dropout=args.dropout,
                            init="he", seed=args.seed)
        result = model.lr_find(X_train, y_train, start_lr=args.start_lr, end_lr=args.end_lr,
                               steps=args.steps, batch_size=args.batch_size,
                               optimizer=args.optimizer, weight_decay=args.weight_decay,
                               seed=args.seed)
    print()
    print(f" {'step':>4s} {'lr':>10s} {'loss':>10s} {'smoothed':>10s}")
    every = max(1, len(result.lrs) // 12)
    for k in range(0, len(result.lrs), every):
        print(f" {k:>4d} {result.lrs[k]:>10.3e} {result.losses[k]:>10.4g} "
              f"{result.smoothed[k]:>10.4g}")
    if result.diverged_at is not None:
        print(f"\nThe smoothed loss diverged at step {result.diverged_at} (lr "
              f"{result.lrs[result.diverged_at]:.3g}); the test stopped there.")
    print(f"Suggested lr: {result.suggested_lr:.3g} (steepest descent of the smoothed loss)")
    print(f"Train with:   fastnet train --optimizer {args.optimizer} --lr "
          f"{result.suggested_lr:.3g}")
    record = {"data": source, "layer_sizes": sizes, "optimizer": args.optimizer,
              "lrs": result.lrs, "losses": result.losses, "smoothed": result.smoothed,
              "suggested_lr": result.suggested_lr, "diverged_at": result.diverged_at}
    json_path = os.path.join(out, "lr_find.json")
    with open(json_path, "w") as fh:
        json.dump(record, fh, indent=1, default=_json_default)
    print(f"Saved data:   {json_path}")
    if not args.no_plot:
        png = plotting.lr_range_test(result, os.path.join(out, "lr_find.png"),
                            f"LR range test: {_describe_run(args, sizes)}, {args.optimizer}")
        if png:
            print(f"Saved curve:  {png}")
    return 0


# ---------------------------------------------------------------------------
# plots (matplotlib is optional)
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# diagnose: the article's experiments
# ---------------------------------------------------------------------------

def cmd_diagnose(args):
    """Without --model: run the article's experiments (vanishing gradients through sigmoid
    layers; small / large / He init over 20 ReLU layers; 15 layers with and without batch
    norm; dropout; the learning-rate schedules; early stopping on the simulated curve; the
    full-recipe simulation) and print their tables. With --model: report gradient flow and
    activation statistics (dead ReLUs) per layer of a saved model on --data (default: the
    bundled digits).

    Examples: 'fastnet diagnose'; 'fastnet diagnose --only init,batchnorm --plot plots/';
    'fastnet diagnose --model fastnet-out/model.npz'."""
    if args.model is None:
        if args.data is not None or args.label_column is not None or args.header != "auto":
            raise CommandError("--data, --label-column and --header need --model")
        experiments.print_report(args.only, args.seed, _plot_dir(args.plot))
        return 0
    if args.only is not None:
        raise CommandError("--only applies to the experiments, not to --model")
    return _diagnose_model(args)


def _plot_dir(path):
    return None if path is None else _output_dir("--plot", path, "plot.png")


# ---------------------------------------------------------------------------
# diagnose --model
# ---------------------------------------------------------------------------

_MAX_ROWS = 10000


def _diagnose_model(args):
    import fastnet
    from fastnet import diagnostics as dg
    plot_dir = _plot_dir(args.plot)
    model = fastnet.load(args.model)
    if model.loss != "cross_entropy":
        raise CommandError(f"{args.model} is a regression model; diagnose --model "
                           "supports classifiers")
    X, y, classes, source = _load_data(args)
    if X.shape[1] != model.layer_sizes[0]:
        raise CommandError(f"the data has {X.shape[1]} features but the model takes "
                           f"{model.layer_sizes[0]}")
    if classes.size > model.layer_sizes[-1]:
        raise CommandError(f"the data has {classes.size} classes but the model has "
                           f"{model.layer_sizes[-1]} outputs")
    if X.shape[0] > _MAX_ROWS:
        X, y = X[:_MAX_ROWS], y[:_MAX_ROWS]
    scores = model.evaluate(X, y)
    flow = dg.gradient_flow(model, X, y)
    acts = dg.activation_stats(model, X)

    print(f"Model: {args.model}: {model!r}")
    print(f"Data:  {source}: {X.shape[0]} rows; loss {scores['loss']:.4f}, accuracy "
          f"{scores['accuracy']:.4f}")
    experiments.heading("Gradient flow (one training-mode pass over the data, no update)")
    print(f" {'Layer':>5s} {'name':8s} {'shape':>11s} {'|dW|':>10s} {'mean|dW|':>10s} "
          f"{'max|dW|':>10s} {'|dW|/|W|':>10s}")
    for r in flow:
        shape = f"{r['shape'][0]}x{r['shape'][1]}"
        print(f" {r['layer']:>5d} {r['name']:8s} {shape:>11s} {r['grad_norm']:>10.3e} "
              f"{r['mean_abs_grad']:>10.3e} {r['max_abs_grad']:>10.3e} "
              f"{r['grad_to_weight']:>10.3e}")
    experiments.heading("Activation statistics (inference mode)")
    print(f" {'Layer':>5s} {'name':8s} {'width':>6s} {'mean':>9s} {'std':>9s} {'dead':>6s} "
          f"{'dead %':>7s}")
    for r in acts:
        print(f" {r['layer']:>5d} {r['name']:8s} {r['width']:>6d} {r['mean']:>9.4f} "
              f"{r['std']:>9.4f} {r['dead']:>6d} {100 * r['dead_fraction']:>6.1f}%")
    print()
    for note in _health_notes(model, flow, acts):
        print(f"- {note}")
    from fastnet import health
    print()
    print(health.health_report([r["grad_norm"] for r in flow],
                               [r["dead_fraction"] for r in acts],
                               activation=model.activation,
                               source="one training-mode pass; dead ReLUs in inference mode"))
    if plot_dir is not None:
        saved = []
        fig = plotting.figure(figsize=(12, 4.4), layout="constrained")
        if fig is not None:
            plotting.model_diagnostics(fig, flow, acts)
            saved.append(plotting.save(fig, os.path.join(plot_dir, "model_diagnostics.png")))
            print(f"\nSaved plot: {saved[0]}")
    return 0


def _health_notes(model, flow, acts):
    notes = []
    dead = [r for r in acts if r["dead"]]
    from fastnet import _activations
    if _activations.dead_units(model.activation):
        if not dead:
            notes.append("no dead ReLUs: every hidden unit is active for some row")
        for r in dead:
            severity = "many" if r["dead_fraction"] > 0.25 else "a few"
            notes.append(f"{r['name']}: {r['dead']}/{r['width']} dead ReLUs "
                         f"({100 * r['dead_fraction']:.1f}%, {severity})")
    norms = [r["grad_norm"] for r in flow]
    if norms and min(norms) > 0:
        ratio = max(norms) / min(norms)
        kind = "healthy" if ratio < 100 else "uneven: look for vanishing/exploding gradients"
        notes.append(f"gradient norms span a factor {ratio:.1f} across layers ({kind})")
    elif norms:
        notes.append("some layer has an all-zero gradient (dead layer)")
    return notes


# ---------------------------------------------------------------------------
# bench
# ---------------------------------------------------------------------------

def cmd_bench(args):
    """Time one training epoch of the article's recipe with fastnet and with what a user of
    each peer would write (fast NumPy, the article's NumPy, PyTorch eager and compiled, JAX
    scan), beside the GEMM floor, after NumPy BLAS work and after idle gaps; print the
    tables."""
    from fastnet import bench
    return bench.run_from_args(args)
