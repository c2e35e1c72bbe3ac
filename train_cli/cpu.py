"""What this machine's CPU is: the one reader of /proc/cpuinfo (flags as `lscpu` shows them)."""


def _field(name, cpuinfo):
    try:
        with open(cpuinfo) as f:
            line = next((line for line in f if line.split(":")[0].strip() == name), "")
    except OSError:
        return ""
    return line.partition(":")[2].strip()


def flags(cpuinfo="/proc/cpuinfo"):
    """The CPU's feature flags (empty if they cannot be read)."""
    return set(_field("flags", cpuinfo).split())


def model(cpuinfo="/proc/cpuinfo"):
    """The CPU's model name."""
    return _field("model name", cpuinfo) or "unknown CPU"
