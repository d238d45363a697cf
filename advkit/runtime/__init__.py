"""What every engine stands on: the process group (the only reader of torchrun's rank variables), the device,
seeds, atomic writes and the run folder."""

from advkit.runtime.device import cache_dir, resolve_device, seed_everything
from advkit.runtime.distributed import Dist, init_distributed, is_main_process, shutdown
from advkit.runtime.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from advkit.runtime.run import (
    RunFolder,
    config_diff,
    cpu_state,
    deterministic,
    ema_update,
    progress_bar,
    restore_rng,
    rng_state,
)

__all__ = ["Dist", "init_distributed", "is_main_process", "shutdown", "resolve_device", "seed_everything",
           "cache_dir", "atomic_write_bytes", "atomic_write_text", "atomic_write_json", "RunFolder",
           "config_diff", "cpu_state", "deterministic", "ema_update", "progress_bar", "restore_rng", "rng_state"]
