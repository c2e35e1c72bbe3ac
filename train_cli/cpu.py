"""What this machine's CPU is: the one reader of /proc/cpuinfo (flags as `lscpu` shows them),
and the arithmetic peak that follows from its flags and clock."""

CPUFREQ_MAX = "/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq"  # kHz, turbo included


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


def clock(cpuinfo="/proc/cpuinfo", cpufreq=CPUFREQ_MAX):
    """(GHz, where it was read), or (None, why not).

    cpufreq's maximum (the turbo clock) where the kernel has it, else /proc/cpuinfo's `cpu MHz`,
    which is the current clock, or under a hypervisor the nominal one: cores can run faster."""
    try:
        with open(cpufreq) as f:
            return int(f.read().strip()) / 1e6, f"{cpufreq} (maximum clock)"
    except (OSError, ValueError):
        pass
    try:
        ghz = float(_field("cpu MHz", cpuinfo)) / 1e3
        return ghz, f"{cpuinfo} 'cpu MHz' (current or nominal clock, not turbo)"
    except ValueError:
        return None, f"no clock in {cpufreq} or {cpuinfo}"


# flop per cycle of one core, widest first: (lscpu flags needed, flop/cycle, what that is). Two
# FMA units x vector lanes x 2 (a multiply and an add): an upper bound, as some CPUs have one
# AVX-512 FMA unit or split 512-bit instructions into two 256-bit halves (AMD Zen 4).
FLOP_PER_CYCLE = {
    "float32": [({"avx512f"}, 2 * 16 * 2, "AVX-512: 2 FMA units x 16 float32 lanes x 2"),
                ({"avx2", "fma"}, 2 * 8 * 2, "AVX2: 2 FMA units x 8 float32 lanes x 2"),
                ({"avx"}, 8 * 2, "AVX without FMA: 8 lanes x (1 multiply + 1 add)"),
                ({"sse2"}, 4 * 2, "SSE2: 4 lanes x (1 multiply + 1 add)")],
    # AMX's TDPBF16PS: 16x16x32 multiply-adds every 16 cycles; AVX512_BF16's VDPBF16PS: two pairs
    # per float32 lane, 2 per cycle
    "bfloat16": [({"amx_bf16", "amx_tile"}, 16 * 16 * 32 * 2 // 16,
                  "AMX: 16x16x32 bfloat16 multiply-adds per 16 cycles"),
                 ({"avx512_bf16"}, 2 * 16 * 2 * 2,
                  "AVX512_BF16: 2 units x 16 lanes x 2 pairs x 2")],
}


def flop_per_cycle(cpu_flags, dtype="float32"):
    """(flop per cycle of one core, how it is counted) for the widest unit the flags show, or
    (None, why not)."""
    for needs, flop, how in FLOP_PER_CYCLE.get(dtype, []):
        if needs <= cpu_flags:
            return flop, how
    return None, f"no {dtype} vector unit known in these flags"


def peak_gflops(cpu_flags, ghz, cores, dtype="float32"):
    """{'gflops', 'cores', 'ghz', 'flop_per_cycle', 'how'}: cores x clock x flop per cycle;
    gflops is None when the clock or the unit is unknown."""
    flop, how = flop_per_cycle(cpu_flags, dtype)
    gflops = cores * ghz * flop if flop and ghz else None
    return {"gflops": gflops, "cores": cores, "ghz": ghz, "flop_per_cycle": flop, "how": how}

