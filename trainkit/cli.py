"""The ``trainkit`` command line (typer).

Every user error ends in one line on stderr, ``error: [code] message``, and exit code 2; never a
traceback. TensorFlow is imported only by the commands that need it, with its C++ start-up noise
filtered (:mod:`trainkit.quiet`), so ``trainkit recipes`` answers instantly.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import itertools
import platform
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from trainkit import __version__
from trainkit.errors import NOTHING_TRAINED, TrainingInterrupted, TrainkitError
from trainkit.interrupt import (
    Terminated,
    forget_termination,
    restore_sigterm,
    sigterm_as_interrupt,
    terminated,
)
from trainkit.writers.pipes import lost_output, survive_closed_pipes

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Train Keras models with a measured, compiled loop and find out why the loss looks wrong.",
)


def _installed_version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _print_version(value: bool) -> None:
    if not value:
        return
    # The versions a bug report needs, read from the installed packages' metadata: importing
    # TensorFlow to ask it would take seconds.
    installed = []
    # TensorFlow also comes as tensorflow-cpu or a nightly: the first of them that is installed.
    for names in (("tensorflow", "tensorflow-cpu", "tf-nightly"), ("keras", "keras-nightly")):
        versions = [(name, _installed_version(name)) for name in names]
        found = [f"{name} {version}" for name, version in versions if version is not None]
        installed.append(found[0] if found else f"{names[0]} not installed")
    typer.echo(f"trainkit {__version__} ({', '.join(installed)}, Python {platform.python_version()})")
    raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the versions of trainkit, TensorFlow, Keras and Python (for a bug report), and exit.")] = False,
) -> None:
    """Train Keras models with a measured, compiled loop and find out why the loss looks wrong."""

EXIT_USER_ERROR = 2
EXIT_NONFINITE_LOSS = 3

SetOption = Annotated[list[str], typer.Option("--set", metavar="KEY=VALUE", help="Override a recipe field, e.g. --set training.epochs=3 (repeatable).")]
RecipeArg = Annotated[Path, typer.Argument(help="Path of a recipe YAML file.", metavar="RECIPE", show_default=False)]


def _err(message: str) -> None:
    typer.echo(message, err=True)


class _InterruptSaid:
    """Whether this command has said why it stopped on Ctrl-C or SIGTERM.

    typer turns a ``KeyboardInterrupt`` that a command lets out into a silent exit code 130, the
    same code the command's own handling returns after saying how to resume: this tells them apart.
    """

    said = False


def _interrupted(message: str, code: int) -> typer.Exit:
    """Says ``message`` and returns the exit to raise for an interrupted command (130 or 143)."""
    _err(message)
    _InterruptSaid.said = True
    return typer.Exit(code)


@contextlib.contextmanager
def user_errors(interrupted: str = "Stopped.") -> Iterator[None]:
    """Turns trainkit's user errors into one line on stderr and exit code 2.

    Args:
        interrupted: What a Ctrl-C here means (typer would exit 130 without a word).
    """
    try:
        yield
    except TrainingInterrupted:
        raise  # not a user error: the command says how to resume and exits 130/143
    except KeyboardInterrupt as stop:
        raise _interrupted(f"interrupted: {interrupted}", _interrupt_code(stop)) from None
    except TrainkitError as err:
        _err(f"error: {one_line(str(err))}")
        raise typer.Exit(EXIT_USER_ERROR) from None


def _interrupt_code(stop: BaseException) -> int:
    """130 for Ctrl-C, 143 for SIGTERM (which :func:`main` turns into :class:`Terminated`)."""
    return 143 if isinstance(stop, Terminated) else 130


def one_line(message: str) -> str:
    """Escapes control characters (a key typed with a newline in it, say) so an error stays one line."""
    return "".join(ch if ch.isprintable() or ch == " " else ascii(ch)[1:-1] for ch in message)


def _load(recipe: Path, overrides: list[str]) -> object:
    from trainkit.recipe import load_recipe

    return load_recipe(recipe, overrides)


def _load_one_of(recipe: Path, overrides: list[str], *, several: bool) -> object:
    """Loads one of compare's recipes; with several, an error names the recipe it is about.

    ``--set`` applies to every recipe, and an error it causes in one of them (``data.rows`` on a
    csv source) said what was wrong but not in which recipe.
    """
    try:
        return _load(recipe, overrides)
    except TrainkitError as err:
        if not several or str(recipe) in err.message:
            raise
        raise type(err)(err.code, f"{recipe}: {err.message}") from None


def _import_tensorflow() -> None:
    from trainkit.quiet import import_tensorflow_quietly

    import_tensorflow_quietly()


@app.command(short_help="Train a recipe: checks, training, TensorBoard logs, a report.")
def train(
    recipe: RecipeArg,
    set_: SetOption = [],  # noqa: B006  (typer needs a literal default)
    logdir: Annotated[Path | None, typer.Option(metavar="DIR", help="Root directory of the runs (default: the recipe's logging.logdir).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or epoch lines.")] = False,
    resume: Annotated[Path | None, typer.Option(metavar="RUN_DIR", help="Continue this run directory from its newest checkpoint (it stays where it is: no --logdir needed).")] = None,
) -> None:
    """Train a recipe: checks, training, TensorBoard logs and a report under <logdir>/<name>/<time>/.

    A run that trained (completed, or stopped early) also leaves its trained model there as
    model.keras, which keras.models.load_model reads, compiled with the run's loss, metrics and
    optimizer.

    Exit codes: 0 trained (also where the model could not be saved: a warning: [model-unsaved] line
    says why), 2 bad input, 3 stopped on a NaN/infinite loss (no model.keras), 130/143 interrupted by
    Ctrl-C/SIGTERM (a checkpoint is written; the message says how to resume).
    """
    if resume is not None and logdir is not None and not _is_within(resume, logdir):
        # A resume writes into RUN_DIR only: the --logdir was ignored without a word, and the user
        # looked for the continued run under it.
        _err(f"error: [usage] --resume {resume} is not under --logdir {logdir}: a resume continues in its own run directory. "
             "Leave --logdir out (or give the logdir that holds the run). See trainkit train --help.")
        raise typer.Exit(EXIT_USER_ERROR)
    try:
        # Ctrl-C outside fit's own handling: loading the data, importing TensorFlow, building.
        # A resume's run directory stays (only a new run's is removed): "nothing kept" read as its loss.
        stopped = NOTHING_TRAINED if resume is None else f"Stopped before training began; nothing was trained, and {resume} is kept as it was: resume it again."
        with user_errors(interrupted=stopped):
            loaded = _load(recipe, set_)
            _import_tensorflow()
            from trainkit.run import summary_lines, train_recipe

            result = train_recipe(loaded, logdir=logdir, verbose=0 if quiet else 1, resume=resume)  # type: ignore[arg-type]
    except TrainingInterrupted as err:
        run_dir = getattr(err, "run_dir", None)
        options = "".join(f" --set {shlex.quote(o)}" for o in set_)
        # Quoted like the recipe: a run directory under a path with spaces must paste back whole.
        resume_with = f" Resume with: trainkit train {shlex.quote(str(recipe))}{options} --resume {shlex.quote(str(run_dir))}" if run_dir is not None else ""
        raise _interrupted(f"interrupted: {err.message}{resume_with}", err.exit_code) from None
    for line in summary_lines(result):
        typer.echo(line)
    if result.status == "nan-loss":
        raise typer.Exit(EXIT_NONFINITE_LOSS)


def _is_within(path: Path, directory: Path) -> bool:
    """Whether ``path`` lies under ``directory``, however either is spelt (relative, ``..``, links)."""
    try:
        return path.resolve().is_relative_to(directory.resolve())
    except (OSError, RuntimeError):  # a link loop: no claim either way
        return True


@app.command(short_help="Check a recipe, its data and its model, without training.")
def check(recipe: RecipeArg, set_: SetOption = []) -> None:  # noqa: B006
    """Validate a recipe, build its data and model, and run every check without training.

    A recipe with a sweep: section is checked variant by variant, as compare would train them.
    """
    with user_errors():
        loaded = _load(recipe, set_)
        _import_tensorflow()
        from trainkit.compare import expand
        from trainkit.errors import TrainkitError
        from trainkit.run import prepare_run
        from trainkit.runs import check_writable, refuse_a_run_directory

        variants = expand(loaded)  # type: ignore[arg-type]
        # As train and compare refuse it before training: a logging.logdir that is a file, a run
        # directory or read-only passed the check with "ok". Nothing is left behind.
        for root in dict.fromkeys(Path(v.recipe.logging.logdir) for v in variants):
            refuse_a_run_directory(root)
            check_writable(root, keep=False)
        for variant in variants:
            try:
                prepared = prepare_run(variant.recipe)
            except TrainkitError as err:
                if len(variants) == 1:
                    raise
                raise type(err)(err.code, f"{variant.where}: {err.message}") from None
            _print_check(prepared)


def _print_check(prepared: Any) -> None:
    splits = prepared.splits
    typer.echo(f"{prepared.recipe.name}: task {prepared.recipe.task}, {len(splits.x_train)} training rows, {0 if splits.x_val is None else len(splits.x_val)} validation rows, {prepared.trainer.model.count_params()} parameters")
    for finding in prepared.findings:
        typer.echo(finding.format())
    if not [f for f in prepared.findings if f.severity != "info"]:
        typer.echo("ok: no compatibility or data problems found")


@app.command("diagnose", short_help="Print a run's findings, rebuilt from its TensorBoard logs.")
def diagnose_command(
    run_dir: Annotated[Path, typer.Argument(help="A run directory (<logdir>/<recipe>/<time>), or a recipe's directory for its newest run.", metavar="RUN_DIR", show_default=False)],
    json_output: Annotated[bool, typer.Option("--json", help="Print the findings as JSON instead of text.")] = False,
) -> None:
    """Rebuild a run's findings from its TensorBoard logs alone and print the report.

    A run that did not finish (interrupted, failed, killed) gets the findings of its events so far,
    with a line saying so and how to resume it. A model: line names the run's model.keras (--json:
    model_file), or says how to write one that a run which ended with a usable model lacks.
    """
    from trainkit.runs import MODEL_FILE, json_text

    with user_errors():
        _import_tensorflow()
        from trainkit.diagnosis.readback import (
            diagnose_events,
            find_run_dir,
            missing_epochs_note,
            model_file_line,
            read_run,
            unfinished_note,
        )
        from trainkit.diagnosis.report import render_text

        found = find_run_dir(run_dir)
        events = read_run(found)
        findings = diagnose_events(events)
        unfinished = unfinished_note(found)
        incomplete = missing_epochs_note(events)
        model = model_file_line(found)
    if json_output:
        model_file = found / MODEL_FILE if model is not None and (found / MODEL_FILE).is_file() else None
        typer.echo(json_text({"run_dir": str(found), "unfinished": unfinished, "incomplete": incomplete, "model_file": model_file and str(model_file),
                              "findings": [f.to_dict() for f in findings]}))
        return
    typer.echo(f"run {found}")
    for note in (unfinished, incomplete, model):
        if note:
            typer.echo(note)
    typer.echo(render_text(findings))


@app.command("recipes", short_help="List the recipes of a directory with their descriptions.")
def list_recipes_command(directory: Annotated[Path, typer.Argument(help="Directory of recipe files.", metavar="DIRECTORY")] = Path("recipes")) -> None:
    """List the recipes of a directory with their one-line descriptions."""
    from trainkit.recipe import list_recipes

    if not directory.is_dir():
        what = f"{directory} is a file: trainkit recipes lists a directory (trainkit check {directory} checks one recipe)" if directory.is_file() else f"No recipe directory at {directory}"
        if directory == Path("recipes") and not directory.exists():
            # Run outside the repository: the scenario recipes are its files, not the package's.
            what += " (the scenario recipes are the trainkit repository's recipes/ folder, which pip does not install)"
        _err(f"error: [recipes-not-found] {what}. Pass one: trainkit recipes PATH.")
        raise typer.Exit(EXIT_USER_ERROR)
    entries = list_recipes(directory)
    if not entries:
        _err(f"No recipes (*.yaml) in {directory}.")
    width = max((len(name) for name, _ in entries), default=0)
    for name, description in entries:
        typer.echo(f"{name:<{width}}  {description}")


def _check_output_file(path: Path, inputs: list[Path]) -> None:
    """Refuses an output file that cannot be written, before hours of training go to waste, and
    one that would replace a recipe (``trainkit compare --json a.yaml b.yaml`` takes ``a.yaml`` for
    the output: the comparison of ``b.yaml`` overwrote the recipe ``a.yaml`` with JSON)."""
    import tempfile

    from trainkit.errors import RunDirError
    from trainkit.runs import new_directories, os_error_reason

    if path.is_dir():
        raise RunDirError("output-unwritable", f"--json {path} is a directory; give a file name such as {path / 'compare.json'}.")
    if path.is_file() and (path.suffix.lower() in (".yaml", ".yml") or any(_same_file(path, given) for given in inputs)):
        raise RunDirError("output-is-input", f"--json {path} would overwrite a recipe with the comparison. Give the file to write after --json "
                                             "(a new name such as compare.json), and the recipes as arguments: trainkit compare RECIPE... --json compare.json.")
    # The folders this makes to prove it are removed again: a variant refused by its checks (or a
    # Ctrl-C) before any run ended left an empty --json folder behind; write_json makes them.
    created = new_directories(path.parent)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".trainkit-write-test-"):
            pass
    except OSError as err:
        raise RunDirError("output-unwritable", f"Cannot write --json {path}: {os_error_reason(err, path.parent)}. Pass a file in a writable directory.") from None
    finally:
        for directory in created:  # deepest first
            with contextlib.suppress(OSError):
                directory.rmdir()


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return False


@app.command("compare", short_help="Train several recipes or a sweep's variants; print a table.")
def compare_command(
    recipes: Annotated[list[Path], typer.Argument(help="Recipe files; one with a sweep: section stands for every combination of its values.", metavar="RECIPE", show_default=False)],
    set_: SetOption = [],  # noqa: B006
    logdir: Annotated[Path | None, typer.Option(metavar="DIR", help="Root directory of the runs (default: each recipe's logging.logdir).")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", metavar="PATH", help="Also write the comparison as JSON to this file.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines; only the table.")] = False,
) -> None:
    """Train several recipes, or every variant of a recipe's sweep:, and print their results side by side.

    Each run gets its own run directory (<logdir>/<recipe>-<key>=<value>/<time>/). The table shows
    the hyperparameters that differ, the final train and validation loss and metrics, the best
    epoch and the findings' codes. --set applies to every recipe.

    Exit codes: 0 the table was printed (a run that stopped on a NaN/infinite loss is a result, a
    row marked "stopped: nan-loss"), 2 bad input (nothing trains), 130/143 interrupted by
    Ctrl-C/SIGTERM (the finished runs' table is printed, then the command that resumes the run
    it stopped).
    """
    from trainkit.compare import expand_all, format_table, iter_compare, where_runs_went
    from trainkit.errors import TrainingInterrupted

    rows = []
    # A Ctrl-C that gets here came before the first run trained: iter_compare's own is caught below.
    with user_errors(interrupted=NOTHING_TRAINED):
        loaded = [_load_one_of(path, set_, several=len(recipes) > 1) for path in recipes]
        if json_path is not None:
            _check_output_file(json_path, recipes)
        # Before expanding: a variant's hyperparameters (Adam's default learning rate) import Keras,
        # and TensorFlow imported there printed its C++ start-up noise unfiltered.
        _import_tensorflow()
        variants = expand_all(loaded)  # type: ignore[arg-type]
        try:
            for row in iter_compare(variants, logdir=logdir, progress=None if quiet else _err):
                rows.append(row)
        except (TrainingInterrupted, KeyboardInterrupt) as err:
            # The runs that finished are results: show (and write) them before leaving.
            if rows:
                typer.echo(format_table(rows))
                if json_path is not None and _write_json(rows, json_path):
                    _err(f"the {len(rows)} finished run{'s' if len(rows) != 1 else ''} written to {json_path}")
            run_dir = getattr(err, "run_dir", None)
            resume = f". Resume the run it stopped with: {variants[len(rows)].resume_command(run_dir)}" if run_dir is not None else ""
            raise _interrupted(f"interrupted after {len(rows)} of {len(variants)} runs{resume}",
                               getattr(err, "exit_code", _interrupt_code(err))) from None
    typer.echo(format_table(rows))
    where = where_runs_went(rows)
    if where is not None and not quiet:
        _err(where)
    if json_path is not None:
        if not _write_json(rows, json_path):
            raise typer.Exit(EXIT_USER_ERROR)
        if not quiet:
            _err(f"comparison written to {json_path}")


def _write_json(rows: list[Any], path: Path) -> bool:
    """Writes compare's --json file, or says in one line why it could not; whether it wrote it.

    The directory was writable when compare began, but the runs take long enough for it to change
    (a full disk, a directory made read-only): a traceback then hid that the table was printed.
    """
    from trainkit.compare import write_json
    from trainkit.runs import os_error_reason

    try:
        write_json(rows, path)
    except OSError as err:
        _err(f"error: [output-unwritable] Cannot write --json {path}: {os_error_reason(err, path.parent)}. The table printed above holds "
             "the results, and each run is in its run directory.")
        return False
    return True


@app.command("tensorboard", short_help="Serve TensorBoard on the runs, on 127.0.0.1.")
def tensorboard_command(
    logdir: Annotated[Path, typer.Argument(help="Directory of runs, or one run's own directory (default: runs, the recipes' default logdir).", metavar="LOGDIR")] = Path("runs"),
    port: Annotated[int, typer.Option(metavar="N", help="Port on 127.0.0.1; 0 picks a free one.")] = 0,
) -> None:
    """Start TensorBoard on the runs of LOGDIR, on 127.0.0.1, print its URL, and serve until Ctrl-C."""
    from trainkit.board import TensorBoardError, TensorBoardServer, port_is_free

    if not logdir.is_dir():
        _err(f"error: [logdir-not-found] No run directory at {logdir}. Train something first (trainkit train RECIPE) or pass the directory: trainkit tensorboard PATH.")
        raise typer.Exit(EXIT_USER_ERROR)
    if not 0 <= port <= 65535:
        _err(f"error: [bad-port] --port {port} is not a TCP port; give 1 to 65535, or 0 for a free one.")
        raise typer.Exit(EXIT_USER_ERROR)
    if port and not port_is_free(port):
        _err(f"error: [port-in-use] Port {port} on 127.0.0.1 cannot be bound (in use, or reserved). Pick another with --port, or --port 0 for a free one.")
        raise typer.Exit(EXIT_USER_ERROR)
    if next(logdir.rglob("events.out.tfevents.*"), None) is None:
        # It serves anyway (runs show up as they are trained), but an empty page without a word
        # looked like a broken TensorBoard or a wrong directory.
        _err(f"note: no TensorBoard logs under {logdir} yet; runs trained into it (--logdir {shlex.quote(str(logdir))}) appear as they are written.")
    server = TensorBoardServer(logdir, port=port)
    previous = sigterm_as_interrupt()  # `kill` must not leave the TensorBoard child behind
    try:
        server.start()
        server.wait_ready(timeout=120)
        typer.echo(f"TensorBoard at {server.url} serving {logdir} (Ctrl-C to stop)")
        assert server.process is not None
        server.process.wait()
        # Only reached when TensorBoard exits by itself.
        _err(f"error: TensorBoard stopped with code {server.process.returncode}: " + " | ".join(server.output_tail(3)))
        raise typer.Exit(1)
    except TensorBoardError as err:
        _err(f"error: {one_line(str(err))}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        _err("stopping TensorBoard")
    finally:
        server.stop()
        restore_sigterm(previous)


def _command_name(context: Any) -> str:
    """``trainkit train`` for a subcommand's context, however the program was started.

    Click gives some parse errors (an option missing its value) no context: the subcommand is
    then the first word of the command line that names one.
    """
    if context is None:
        commands = {command.name or command.callback.__name__ for command in app.registered_commands if command.callback}
        named = next((word for word in sys.argv[1:] if not word.startswith("-")), None)
        return f"trainkit {named}" if named in commands else "trainkit"
    names = []
    while context is not None and context.parent is not None:
        names.append(context.info_name)
        context = context.parent
    return " ".join(["trainkit", *reversed(names)])


def main() -> None:
    """Console-script entry point.

    A usage mistake (a missing argument, an unknown option, ``--port abc``) ends like every other
    user error: one ``error: [usage] ...`` line and exit code 2, not a boxed panel. Output piped
    into a reader that stops early (``| head``) no longer stops the command, nor does output that
    cannot be written (a full disk), which is said at the end (see :mod:`trainkit.writers.pipes`).
    """
    survive_closed_pipes()
    # SIGTERM's default killed the process without a word (and without compare's table of the runs
    # that finished) wherever no run had taken the signals yet: importing TensorFlow, loading and
    # checking data. It stops the command as Ctrl-C does there, with exit code 143.
    sigterm_as_interrupt()
    sys.exit(_report_lost_output(_dispatch()))


def _dispatch() -> int:
    """Runs the command line; its exit code."""
    empty = _empty_argument(sys.argv[1:])
    if empty is not None:
        # `--logdir "$LOGDIR"` with the variable unset trained into the current directory: click
        # reads an empty path as ".".
        # --set takes an override, not a path: "an empty path" sent its user looking for one.
        give = ("Give an override KEY=VALUE, e.g. --set training.epochs=5" if empty == "The value of --set"
                else "Give a value: an empty path would be taken for the current directory")
        _err(f"error: [usage] {empty} is empty (a shell variable that was not set?). {give}. See {_command_name(None)} --help.")
        return EXIT_USER_ERROR
    forget_termination()  # a SIGTERM of an earlier command in this process is not this one's
    _InterruptSaid.said = False
    try:
        code = app(standalone_mode=False)
        if code == 130 and not _InterruptSaid.said:
            # Ctrl-C or SIGTERM outside user_errors (listing recipes, printing a report): typer
            # made either a silent exit 130.
            _err("interrupted")
            return 143 if terminated() else 130
    except KeyboardInterrupt as stop:
        _err("interrupted")
        return _interrupt_code(stop)
    except Exception as err:
        # Click's exceptions, which typer either depends on or vendors: matched by class name.
        kinds = {cls.__name__ for cls in type(err).__mro__}
        context = getattr(err, "ctx", None)
        if "NoArgsIsHelpError" in kinds:  # bare `trainkit`: the help, as before
            _err(context.get_help() if context is not None else str(err))
        elif "UsageError" in kinds:
            message = err.format_message().strip()  # type: ignore[attr-defined]
            ending = "" if message.endswith((".", "?")) else "."
            _err(f"error: [usage] {message}{ending}{_cut_override(sys.argv[1:])} See {_command_name(context)} --help.")
        elif "Abort" in kinds:
            _err("interrupted")
            return 130
        else:
            raise
        return EXIT_USER_ERROR
    return code if isinstance(code, int) else 0


def _cut_override(args: list[str]) -> str:
    """What to do about a ``--set`` value the shell cut at a space (its rest came as extra
    arguments), or ``''``."""
    from trainkit.recipe_overrides import cut_value_hint

    values = [value for option, value in itertools.pairwise(args) if option == "--set"]
    values += [arg.removeprefix("--set=") for arg in args if arg.startswith("--set=")]
    return next((hint for hint in map(cut_value_hint, values) if hint), "")


def _empty_argument(args: list[str]) -> str | None:
    """What an empty command-line word was given as (``--logdir ""``, ``--logdir=``, a RECIPE), or
    ``None``: no argument of trainkit's may be empty, and click reads an empty path as ``.``."""
    for i, arg in enumerate(args):
        # Only an option's own "=" (--logdir=): --set=training.early_stopping= sets a value to null.
        if arg.startswith("--") and arg.endswith("=") and arg.count("=") == 1 and len(arg) > 3:
            return f"The value of {arg[:-1]}"
        if arg == "":
            before = args[i - 1] if i else ""
            return f"The value of {before}" if before.startswith("-") and "=" not in before else "An argument"
    return None


def _report_lost_output(code: int) -> int:
    """Says which standard stream could not be written, once the command is done; its exit code.

    The command carried on without the stream (a run is written whole), but what it printed there
    is gone: exit 0 would tell a script that reads the output that it has it all.
    """
    lost = lost_output()
    for where, err in lost.items():
        reason = err.strerror or str(err)
        _err(f"error: [output-unwritable] Could not write to {where}: {reason}. What the command printed there is lost "
             "(a run's report.json and events are in its run directory); redirect it to a writable file with space, or leave it on the terminal.")
    return (code or EXIT_USER_ERROR) if lost else code


if __name__ == "__main__":
    main()
