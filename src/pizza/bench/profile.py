"""Profile the kernel's hot paths: the relay (publish) and the consumer (consume, handlers).

    python -m pizza.bench --profile bench-results/profile [--n 20000]

Runs only the kernel variant of each scenario, one round, under pyinstrument (the event
loop's thread, wall clock, so time the loop sits idle waiting for the broker or for
aiosqlite's thread shows as ``select``/``epoll``), or cProfile when pyinstrument is not
installed. Writes a text report (and pyinstrument's HTML) per path.
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import pstats
from pathlib import Path
from typing import Any

from pizza.bench.common import Settings

PATHS = {
    "publish": ("publish", "relay"),
    "consume": ("consume", "kernel"),
    "handlers": ("handlers", "batch"),
}


def profile(directory: Path, n: int = 20_000, paths: list[str] | None = None) -> dict[str, Any]:
    from pizza.bench import _scenario

    directory.mkdir(parents=True, exist_ok=True)
    reports: dict[str, Any] = {}
    for name in paths or list(PATHS):
        scenario_name, variant = PATHS[name]
        settings = Settings(quick=True, n=n, rounds=1, only=(variant,))
        scenario = _scenario(scenario_name)
        reports[name] = _profiled(name, lambda s=scenario, st=settings: asyncio.run(s(st)),
                                  directory)
    return reports


def _profiled(name: str, call: Any, directory: Path) -> dict[str, Any]:
    import importlib.util

    if importlib.util.find_spec("pyinstrument") is not None:
        import pyinstrument

        profiler = pyinstrument.Profiler(interval=0.0005, async_mode="disabled")
        profiler.start()
        result = call()
        profiler.stop()
        text = profiler.output_text(unicode=False, color=False, show_all=False)
        (directory / f"{name}.txt").write_text(text)
        (directory / f"{name}.html").write_text(profiler.output_html())
        return {"tool": "pyinstrument", "report": str(directory / f"{name}.txt"),
                "result": result}
    prof = cProfile.Profile()
    result = prof.runcall(call)
    stream = io.StringIO()
    pstats.Stats(prof, stream=stream).sort_stats("cumulative").print_stats(60)
    (directory / f"{name}.txt").write_text(stream.getvalue())
    prof.dump_stats(directory / f"{name}.prof")
    return {"tool": "cProfile", "report": str(directory / f"{name}.txt"), "result": result}
