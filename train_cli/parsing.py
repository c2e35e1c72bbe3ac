"""Parsers of option values, one per TrainConfig field type (PARSE_BY_TYPE picks one).

Each takes a string (a command-line flag) or a TOML value and returns the value, or raises
ValueError with a message that says what was expected: the same parser reads flags and config
files, so a value means the same thing wherever it is written.
"""
import re

SEED_RANGE = re.compile(r"^(\d+)-(\d+)$")


def parse_int(value):
    """An integer (not a bool)."""
    if isinstance(value, bool):
        raise ValueError(f"expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise ValueError(f"expected an integer, got {value!r}")


def parse_float(value):
    """A number, as a float (not a bool)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise ValueError(f"expected a number, got {value!r}")


def parse_int_list(value):
    """Integers from '10,20,30' or a TOML list."""
    if isinstance(value, str):
        items = [s.strip() for s in value.split(",") if s.strip()]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise ValueError(f"expected comma-separated integers like 10,20,30, got {value!r}")
    out = []
    for item in items:
        try:
            out.append(parse_int(item))
        except ValueError:
            raise ValueError(f"{item!r} is not an integer (expected integers separated by "
                             "commas)") from None
    return tuple(out)


def parse_str(value):
    """A string, as it is."""
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value


def parse_bool(value):
    """true/false (also 1/0, yes/no)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.lower() in ("true", "1", "yes")
    raise ValueError(f"expected true or false, got {value!r}")


def parse_choice(choices):
    """A parser of a string that must be one of choices."""
    def parse(value):
        value = parse_str(value)
        if value not in choices:
            raise ValueError(f"{value!r} is not one of {', '.join(choices)}")
        return value
    return parse


PARSE_BY_TYPE = {int: parse_int, float: parse_float, str: parse_str, bool: parse_bool,
                 tuple[int, ...]: parse_int_list}


def parse_seeds(text):
    """'1-10', '1,2,5' or '1-3,7' -> (1, 2, ...): the seeds in the order given (that they are
    distinct is runspec.rules.check_seeds's to say)."""
    seeds = []
    for part in (p.strip() for p in str(text).split(",")):
        match = SEED_RANGE.match(part)
        if match:
            low, high = int(match.group(1)), int(match.group(2))
            if high < low:
                raise ValueError(f"the range {part} runs backwards; write {high}-{low}")
            seeds += range(low, high + 1)
        elif part.isdigit():
            seeds.append(int(part))
        elif part:
            raise ValueError(f"{part!r} is neither a seed nor a range like 1-10")
    return tuple(seeds)
