"""Studies: a grid of cells (model x seed), each a run in a fixed folder, and the executors
that only decide where a cell runs (this process, a local pool, a Slurm job array)."""
