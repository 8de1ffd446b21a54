"""The ``trainkit`` command line (typer).

Every user error ends in one line on stderr, ``error: [code] message``, and exit code 2; never a
traceback. TensorFlow is imported only by the commands that need it, with its C++ start-up noise
filtered (:mod:`trainkit.quiet`), so ``trainkit recipes`` answers instantly.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from trainkit.errors import TrainkitError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Train Keras models with a measured, compiled loop and find out why the loss looks wrong.",
)

EXIT_USER_ERROR = 2

SetOption = Annotated[list[str], typer.Option("--set", help="Override a recipe field, e.g. --set training.epochs=3 (repeatable).")]
RecipeArg = Annotated[Path, typer.Argument(help="Path of a recipe YAML file.", show_default=False)]


def _err(message: str) -> None:
    typer.echo(message, err=True)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turns trainkit's user errors into one line on stderr and exit code 2."""
    try:
        yield
    except TrainkitError as err:
        _err(f"error: {err}")
        raise typer.Exit(EXIT_USER_ERROR) from None


def _load(recipe: Path, overrides: list[str]) -> object:
    from trainkit.recipe import load_recipe

    return load_recipe(recipe, overrides)


def _import_tensorflow() -> None:
    from trainkit.quiet import import_tensorflow_quietly

    import_tensorflow_quietly()


@app.command()
def train(
    recipe: RecipeArg,
    set_: SetOption = [],  # noqa: B006  (typer needs a literal default)
    logdir: Annotated[Path | None, typer.Option(help="Root directory of the runs (default: the recipe's logging.logdir).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or epoch lines.")] = False,
) -> None:
    """Train a recipe: checks, training, TensorBoard logs and a report under <logdir>/<name>/<time>/."""
    with user_errors():
        loaded = _load(recipe, set_)
        _import_tensorflow()
        from trainkit.run import summary_lines, train_recipe

        result = train_recipe(loaded, logdir=logdir, verbose=0 if quiet else 1)  # type: ignore[arg-type]
    for line in summary_lines(result):
        typer.echo(line)


@app.command()
def check(recipe: RecipeArg, set_: SetOption = []) -> None:  # noqa: B006
    """Validate a recipe, build its data and model, and run every check without training."""
    with user_errors():
        loaded = _load(recipe, set_)
        _import_tensorflow()
        from trainkit.run import prepare_run

        prepared = prepare_run(loaded)  # type: ignore[arg-type]
    splits = prepared.splits
    typer.echo(f"{prepared.recipe.name}: task {prepared.recipe.task}, {len(splits.x_train)} training rows, {0 if splits.x_val is None else len(splits.x_val)} validation rows, {prepared.trainer.model.count_params()} parameters")
    for finding in prepared.findings:
        typer.echo(finding.format())
    if not [f for f in prepared.findings if f.severity != "info"]:
        typer.echo("ok: no compatibility or data problems found")


@app.command("recipes")
def list_recipes_command(directory: Annotated[Path, typer.Argument(help="Directory of recipe files.")] = Path("recipes")) -> None:
    """List the recipes of a directory with their one-line descriptions."""
    from trainkit.recipe import list_recipes

    if not directory.is_dir():
        _err(f"error: [recipes-not-found] No recipe directory at {directory}. Pass one: trainkit recipes PATH.")
        raise typer.Exit(EXIT_USER_ERROR)
    entries = list_recipes(directory)
    width = max((len(name) for name, _ in entries), default=0)
    for name, description in entries:
        typer.echo(f"{name:<{width}}  {description}")


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        _err("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
