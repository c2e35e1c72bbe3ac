"""config.py: every option is one TrainConfig field, and flags, TOML and config.json agree on it."""
import dataclasses
import json

import click
import pytest
from click.testing import CliRunner

from train_cli.cli.options import INT_LIST, config_options
from train_cli.config import FIELD_NAMES, OPTIONS, TrainConfig, from_dict, load_toml, to_dict


def other_value(opt):
    """A value of the option's type that is not its default."""
    if opt.choices:
        return next(c for c in opt.choices if c != opt.default)
    if opt.type is bool:
        return not opt.default
    if opt.type in (int, float):
        return opt.default + 3
    if opt.type is str:
        return opt.default + "elsewhere"
    return opt.default + (max(opt.default, default=0) + 5,)  # tuple[int, ...]


OTHER = TrainConfig(**{name: other_value(opt) for name, opt in OPTIONS.items()})


def as_flag(value):
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def test_every_field_is_declared_with_option():
    assert FIELD_NAMES == [f.name for f in dataclasses.fields(TrainConfig)]
    for name, opt in OPTIONS.items():
        assert opt.help.strip() and opt.help.endswith("."), name
        assert opt.default == getattr(TrainConfig(), name)
        assert opt.parse(opt.default) == opt.default, name  # a TOML or config.json value
        assert opt.parse(as_flag(opt.default)) == opt.default, name  # a flag's text
        assert opt.flag == "--" + opt.key and "_" not in opt.key, name
        assert getattr(OTHER, name) != opt.default, name


def test_a_field_declared_without_option_or_with_no_parser_is_refused():
    from train_cli.config import Option, option

    @dataclasses.dataclass
    class Bad:
        plain: int = 1
        odd: complex = option(1j, "No parser for this type.")
    plain, odd = dataclasses.fields(Bad)
    with pytest.raises(TypeError, match="plain: declare it with option"):
        Option.of(plain)
    with pytest.raises(TypeError, match="no parser for"):
        Option.of(odd)


def test_every_option_round_trips_through_flags():
    seen = {}

    @click.command()
    @config_options
    def command(**values):
        seen.update(values)

    args = []
    for name, opt in OPTIONS.items():
        value = getattr(OTHER, name)
        if opt.type is bool:
            args.append(opt.flag if value else "--no-" + opt.key)
        else:
            args += [opt.flag, as_flag(value)]
    result = CliRunner().invoke(command, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert TrainConfig(**seen) == OTHER
    CliRunner().invoke(command, [], catch_exceptions=False)
    assert all(v is None for v in seen.values())  # not given: the TOML file or default decides


@pytest.mark.parametrize("spell", [lambda opt: opt.key, lambda opt: opt.name],
                         ids=["lr-steps", "lr_steps"])
def test_every_option_round_trips_through_toml_and_config_json(tmp_path, spell):
    path = tmp_path / "exp.toml"
    path.write_text("".join(f"{spell(OPTIONS[name])} = {json.dumps(value)}\n"
                            for name, value in to_dict(OTHER).items()))
    assert TrainConfig(**load_toml(path)) == OTHER
    assert from_dict(json.loads(json.dumps(to_dict(OTHER)))) == OTHER


def test_seeds_use_the_integer_list_parser_of_lr_steps():
    assert INT_LIST.parse is OPTIONS["lr_steps"].parse is OPTIONS["gpus"].parse
    assert INT_LIST.convert("3, 1,2", None, None) == (3, 1, 2)
