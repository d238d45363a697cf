"""The one report envelope: schema, time, environment, config, data and timing around the model entries of
any evaluation (classifiers under attack, fake-image detectors), with the gates the caller evaluated."""

from __future__ import annotations

import datetime as _dt
import platform
from typing import Any

import torch

from advkit import __version__
from advkit.report.schema import SCHEMA, SCHEMA_VERSION, DataInfo, Environment, Gate, ModelEntry, Report, Timing


def environment(device: torch.device, world: int) -> dict[str, Any]:
    """Versions, platform and device of this run: the report's ``environment``.

    Args:
        device: where the run ran (a CUDA device is named with its model).
        world: the number of processes.

    Returns:
        ``advkit``, ``torch``, ``python``, ``platform``, ``device`` and ``world_size``.
    """
    dev = str(device)
    if device.type == "cuda":
        dev += f" ({torch.cuda.get_device_name(device)})"
    return {"advkit": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "device": dev, "world_size": world}


def build_report(*, config: Any, data: dict[str, Any], models: list[dict[str, Any]], gates: list[dict[str, Any]],
                 device: torch.device, world: int = 1, total_s: float = 0.0, attack_s: float = 0.0,
                 time_saved_s: float = 0.0) -> Report:
    """The report around ``models``, stamped now.

    Args:
        config: the resolved evaluation config as JSON (enough to rerun the evaluation).
        data: ``dataset``, ``split``, ``n``, ``num_classes``, ``shape`` of the evaluated data.
        models: the model entries (see :class:`advkit.report.schema.ModelEntry`), checked here.
        gates: the evaluated gates (``advkit.eval.gates.evaluate_gates`` on ``{"models": models}``); the
            report passes when all of them do.
        device, world: where the run ran and its number of processes.
        total_s, attack_s, time_saved_s: seconds for the timing section (rounded to 0.01).

    Returns:
        The typed report; ``.to_dict()`` is the JSON the writers take.

    Raises:
        AdvkitError: a model entry or a gate misses a key the writers need.
    """
    entries = [ModelEntry.from_dict(m, f"models[{i}]") for i, m in enumerate(models)]
    return Report(
        schema=SCHEMA, schema_version=SCHEMA_VERSION,
        created=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        environment=Environment.from_dict(environment(device, world)), config=config,
        data=DataInfo.from_dict(data), models=entries,
        gates=[Gate.from_dict(g, f"gates[{i}]") for i, g in enumerate(gates)],
        passed=all(g["passed"] for g in gates),
        timing=Timing(total_s=round(total_s, 2), attack_s=round(attack_s, 2), time_saved_s=round(time_saved_s, 2)))
