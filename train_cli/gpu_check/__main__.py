"""`python -m train_cli.gpu_check` (make gpu-check)."""
import os
import sys

from train_cli.gpu_check import main

os.environ.setdefault("PYTHONUNBUFFERED", "1")
sys.exit(main())
