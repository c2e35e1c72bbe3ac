"""ISA classes for the benchmarks: the environment that caps every math library of a child process.

A machine with AVX-512 can stand in for the common AVX2-only CPUs by capping what each library
dispatches to. The variables must be set before the library is loaded, so the benchmarks set them
in the environment of child processes, never in their own:

- MXNet 1.9.1 bundles oneDNN v2.4.4, which reads DNNL_MAX_CPU_ISA (upper case only: `avx2` is
  silently ignored; ONEDNN_MAX_CPU_ISA does not exist in 2.4) -> its `dnnl_verbose,info` line then
  says `isa:Intel AVX2` and convolutions run as `jit:avx2`.
- PyTorch 2.13 bundles oneDNN v3.12 (reads DNNL_MAX_CPU_ISA and ONEDNN_MAX_CPU_ISA), its own
  vectorised ATen kernels (ATEN_CPU_CAPABILITY=avx2) and MKL for nn.Linear's sgemm
  (MKL_ENABLE_INSTRUCTIONS=AVX2).
- OpenBLAS (MXNet's `dot`, numpy's matmul: the sgemm ceiling) dispatches per core type:
  OPENBLAS_CORETYPE=Haswell is its AVX2 kernel set.

`python benchmarks/isa.py` prints the machine line and which classes this CPU can run.
`native` sets nothing. `avx512` caps oneDNN at AVX512_CORE (AVX-512 without the VNNI/BF16/AMX
extensions, which float32 training does not use) so that figures are comparable between AVX-512
machines; PyTorch's ATen then runs its avx512 kernels.
"""
import os

from train_cli import cpu

CAPS = {
    "native": {},
    "avx2": {"DNNL_MAX_CPU_ISA": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2",
             "ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
             "OPENBLAS_CORETYPE": "Haswell"},
    "avx512": {"DNNL_MAX_CPU_ISA": "AVX512_CORE", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE",
               "ATEN_CPU_CAPABILITY": "avx512", "MKL_ENABLE_INSTRUCTIONS": "AVX512",
               "OPENBLAS_CORETYPE": "SkylakeX"},
}
# what each class needs from the CPU (lscpu flag names)
NEEDS = {"native": set(), "avx2": {"avx2", "fma"}, "avx512": {"avx512f", "avx512bw", "avx512vl",
                                                             "avx512dq"}}
CAP_VARS = sorted({k for env in CAPS.values() for k in env})


def machine_line():
    """One line for every figure: CPU, cores and the vector ISA flags that matter here."""
    flags = cpu.flags()
    isa = [f for f in ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                       "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8") if f in flags]
    return f"{cpu.model()}, {len(os.sched_getaffinity(0))} cores; lscpu flags: {' '.join(isa)}"


def available(isa):
    """Can this CPU run the ISA class?"""
    return NEEDS[isa] <= cpu.flags()


def environ(isa, base=None):
    """A copy of the environment with the cap of `isa` (and no stray cap of another class)."""
    env = dict(os.environ if base is None else base)
    for key in CAP_VARS:
        env.pop(key, None)
    env.update(CAPS[isa])
    return env


def describe(isa):
    """The class's environment, as one line."""
    return "none (native)" if isa == "native" else " ".join(f"{k}={v}"
                                                          for k, v in CAPS[isa].items())


def main():
    """`python benchmarks/isa.py`: the machine line, then each class, whether this CPU can run
    it, and its environment."""
    print(f"machine: {machine_line()}")
    for isa in CAPS:
        print(f"{isa:8}{'available' if available(isa) else 'not available on this CPU':28}"
              f"{describe(isa)}")


if __name__ == "__main__":
    main()
