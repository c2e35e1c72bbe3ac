"""The Slurm executor: one sbatch job array, one task per unfinished cell (placeholder)."""
from train_cli.errors import UserError


def submit(study, overrides, jobs, options):
    """Submit the study's unfinished cells as one job array."""
    raise UserError("--executor slurm is not built yet")
