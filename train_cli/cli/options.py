"""Command-line options shared by the commands: one per TrainConfig field, parsed like TOML.

Everything here is derived from the fields of config.TrainConfig: the flag from the name, the
parser from the type (a bool becomes an on/off pair), the help text and default from option().
"""
import click

from train_cli.config import FIELD_NAMES, OPTIONS
from train_cli.parsing import parse_int_list, parse_seeds


class ParsedBy(click.ParamType):
    """A click type that parses with one of config.py's parsers, as the config file does."""

    def __init__(self, parse, name):
        self.parse = parse
        self.name = name  # click shows it as the metavar (NAME) unless the option gives one

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        try:
            return self.parse(value)
        except ValueError as e:
            self.fail(str(e), param, ctx)


class FieldType(ParsedBy):
    """Parses a value exactly as the config file parses the TrainConfig field `field`."""

    def __init__(self, field):
        super().__init__(OPTIONS[field].parse, field)


INT_LIST = ParsedBy(parse_int_list, "int_list")  # 1,2,3: the parser of --lr-steps and --gpus
SEEDS = ParsedBy(parse_seeds, "seeds")  # 1-10,12: lists and ranges


def _default_text(value):
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "none"
    return str(value) if value != "" else "see above"


def click_option(option, default_text=None):
    """The click option of a config.Option; its default None means "not given"."""
    if option.type is bool:  # an on/off pair: --hybridize/--no-hybridize
        on, off = option.key, "no-" + option.key
        shown = default_text or (on if option.default else off)
        return click.option(f"--{on}/--{off}", option.name, default=None,
                            help=f"{option.help} [default: {shown}]")
    shown = default_text or _default_text(option.default)
    return click.option(option.flag, option.name, default=None, type=FieldType(option.name),
                        help=f"{option.help} [default: {shown}]")


def config_options(command=None, only=None, default_text=None, without=()):
    """Add one option per TrainConfig field (or those in `only`, less those in `without`), each
    defaulting to None.

    default_text replaces the shown defaults (e.g. "the run's" for the options of resume).
    Usable as @config_options or @config_options(only=[...]).
    """
    if command is None:
        return lambda command: config_options(command, only, default_text, without)
    for name in reversed([n for n in only or FIELD_NAMES if n not in without]):
        command = click_option(OPTIONS[name], default_text)(command)
    return command


progress_option = click.option(
    "--progress/--no-progress", default=None,
    help="Live progress bar per epoch [default: only when stdout is a terminal].")
