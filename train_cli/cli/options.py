"""Command-line options shared by the commands: one per TrainConfig field, parsed like TOML."""
import click

from train_cli.config import FIELD_NAMES, HELP, PARSERS, TrainConfig, flag


class FieldType(click.ParamType):
    """A click type that parses a value exactly as the config file parser does."""

    def __init__(self, field):
        self.field = field
        self.name = field

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        try:
            return PARSERS[self.field](value)
        except ValueError as e:
            self.fail(str(e), param, ctx)


def _default_text(name):
    value = getattr(TrainConfig(), name)
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "none"
    return str(value) if value != "" else "see above"


def config_options(command, only=None):
    """Add one option per TrainConfig field (or those in `only`), each defaulting to None."""
    for name in reversed(only or FIELD_NAMES):
        if name == "hybridize":
            option = click.option("--hybridize/--no-hybridize", "hybridize", default=None,
                                  help=HELP[name] + " [default: hybridize]")
        else:
            option = click.option(flag(name), name, default=None, type=FieldType(name),
                                  help=f"{HELP[name]} [default: {_default_text(name)}]")
        command = option(command)
    return command


progress_option = click.option(
    "--progress/--no-progress", default=None,
    help="Live progress bar per epoch [default: only when stdout is a terminal].")
