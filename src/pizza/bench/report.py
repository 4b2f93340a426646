"""Show results: a rich table per scenario, and (optionally) a PNG bar chart per scenario.

A scenario's ``goals`` (absolute figures held to this machine's goals, ``common.goal``)
are shown under its table with met/missed, as its ratios are; ``orders`` also shows its
CPU split by process and each process's event-loop lag. Charts need matplotlib (the
``bench`` extra): without it ``plot`` returns None and the run says the charts were
skipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def _number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.3f}"
    return str(value)


def table(name: str, result: dict[str, Any]) -> Table | str:
    status = result.get("status")
    if status == "skipped":
        return f"[yellow]{name}: skipped: {result.get('reason')}[/]"
    if status == "error":
        return f"[red]{name}: error: {result.get('error')}[/]"
    variants: dict[str, dict[str, Any]] = result.get("variants", {})
    extra_keys: list[str] = []
    for item in variants.values():
        for key in item.get("extra", {}):
            if key not in extra_keys:
                extra_keys.append(key)
    size = f"N={result['n']}, " if "n" in result else ""
    title = f"{name} ({size}median of {result.get('rounds')} rounds)"
    out = Table(title=title, title_justify="left")
    out.add_column("variant")
    out.add_column("median", justify="right")
    out.add_column("min", justify="right")
    out.add_column("max", justify="right")
    out.add_column("unit")
    for key in extra_keys:
        out.add_column(key, justify="right")
    for item in variants.values():
        extra = item.get("extra", {})
        out.add_row(item["label"], _number(item["median"]), _number(item["min"]),
                    _number(item["max"]), item["unit"],
                    *(_number(extra.get(key)) for key in extra_keys))
    ratios = result.get("ratios") or {}
    lines = []
    if ratios:
        for ratio_name, ratio in ratios.items():
            goal = ratio.get("goal")
            verdict = ""
            if goal is not None:
                verdict = (f"  goal >= {goal:g} " +
                           ("[green]met[/]" if ratio.get("met") else "[red]missed[/]"))
            per_round = ", ".join(f"{r:.2f}" for r in ratio["rounds"])
            lines.append(f"{ratio_name} = [bold]{ratio['median']:.2f}[/] "
                         f"(rounds {per_round}){verdict}")
    lines += [goal_line(item) for item in (result.get("goals") or {}).values()]
    if lines:
        out.caption = "\n".join(lines)
        out.caption_justify = "left"
    return out


def goal_line(item: dict[str, Any]) -> str:
    """``what = value unit  goal <= x met`` (or missed; "not measured" without a value)."""
    value = item.get("value")
    if value is None:
        verdict = "[yellow]not measured[/]"
    else:
        verdict = "[green]met[/]" if item.get("met") else "[red]missed[/]"
    return (f"{item['what']} = [bold]{_number(value)}[/] {item['unit']}  "
            f"goal {item['direction']} {item['goal']:g} {verdict}")


def split_table(result: dict[str, Any]) -> Table | None:
    """``orders``: CPU-ms per completed order by process, and each process's loop lag."""
    split: dict[str, dict[str, float | None]] = result.get("split_cpu_ms_per_order") or {}
    if not split:
        return None
    lags: dict[str, dict[str, float]] = result.get("loop_lag_ms") or {}
    idle: dict[str, dict[str, float | None]] = result.get("idle_cpu_ms_per_s") or {}
    out = Table(title="orders: CPU-ms per completed order by process (median of rounds), "
                      "event-loop lag (ms, largest), CPU-ms/s at rest",
                title_justify="left")
    out.add_column("process")
    for mode in split:
        out.add_column(f"{mode} CPU-ms", justify="right")
    for mode in lags:
        out.add_column(f"{mode} lag ms", justify="right")
    for mode in idle:
        out.add_column(f"{mode} idle CPU-ms/s", justify="right")
    names: list[str] = []
    for per_mode in split.values():
        names += [name for name in per_mode if name not in names]
    for name in names:
        out.add_row(name, *(_number(split[mode].get(name)) for mode in split),
                    *(_number(lags[mode].get(name)) for mode in lags),
                    *(_number(idle[mode].get(name)) for mode in idle))
    out.add_row("[bold]total[/]", *(_number(sum(v or 0.0 for v in split[mode].values()))
                                     for mode in split), *("" for _ in lags),
                *(_number(sum(v or 0.0 for v in idle[mode].values())) for mode in idle))
    return out


def show(console: Console, name: str, result: dict[str, Any]) -> None:
    console.print(table(name, result))
    if result.get("status") == "ok":
        extra = split_table(result)
        if extra is not None:
            console.print(extra)
    console.print()


def plot(name: str, result: dict[str, Any], directory: Path) -> Path | None:
    """A bar chart of the medians (min-max as error bars); None without matplotlib."""
    if result.get("status") != "ok" or not result.get("variants"):
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    if result.get("split_cpu_ms_per_order"):
        return _plot_orders(name, result, directory, plt)
    variants = list(result["variants"].values())
    labels = [v["label"] for v in variants]
    medians = [v["median"] for v in variants]
    low = [v["median"] - v["min"] for v in variants]
    high = [v["max"] - v["median"] for v in variants]
    figure, axes = plt.subplots(figsize=(max(6.0, 1.9 * len(variants)), 4.5))
    bars = axes.bar(range(len(variants)), medians, yerr=[low, high], capsize=4,
                    color="#4c9a5f")
    axes.bar_label(bars, labels=[f"{m:,.0f}" if m >= 100 else f"{m:.1f}" for m in medians],
                   padding=3, fontsize=8)
    axes.set_xticks(range(len(variants)))
    axes.set_xticklabels([_wrap(label) for label in labels], fontsize=8)
    axes.set_ylabel(variants[0]["unit"])
    ratios = result.get("ratios") or {}
    subtitle = "   ".join(f"{k} = {r['median']:.2f}" for k, r in ratios.items())
    size = f"N={result['n']}, " if "n" in result else ""
    axes.set_title(f"{name} ({size}median of {result.get('rounds')} rounds)\n{subtitle}",
                   fontsize=9)
    figure.tight_layout()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _plot_orders(name: str, result: dict[str, Any], directory: Path, plt: Any) -> Path:
    """Two panels: CPU-ms per completed order stacked by process (each way of running,
    and the floor), and completed orders/s at one and at every process."""
    split: dict[str, dict[str, float | None]] = result["split_cpu_ms_per_order"]
    figure, (cpu, rate) = plt.subplots(1, 2, figsize=(11.0, 4.8),
                                       gridspec_kw={"width_ratios": [2, 1]})
    modes = list(split)
    names: list[str] = []
    for per_mode in split.values():
        names += [n for n in per_mode if n not in names]
    colours = plt.get_cmap("tab20")
    bottoms = [0.0] * len(modes)
    for index, process in enumerate(names):
        heights = [split[mode].get(process) or 0.0 for mode in modes]
        cpu.bar(range(len(modes)), heights, bottom=bottoms, label=process,
                color=colours(index % 20))
        bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
    for index, total in enumerate(bottoms):
        cpu.annotate(f"{total:.1f}", (index, total), ha="center", va="bottom", fontsize=8)
    cpu.set_xticks(range(len(modes)))
    cpu.set_xticklabels(modes, fontsize=8)
    cpu.set_ylabel("CPU-ms per completed order")
    goals = result.get("goals") or {}
    target = next((g["goal"] for k, g in goals.items() if k.startswith("cpu_ms")), None)
    if target is not None:
        cpu.axhline(target, color="#b03030", linestyle="--", linewidth=1)
    cpu.legend(fontsize=7, ncol=2)
    throughput = [v for k, v in result["variants"].items() if k.endswith("_throughput")]
    bars = rate.bar(range(len(throughput)), [v["median"] for v in throughput],
                    color="#4c9a5f")
    rate.bar_label(bars, labels=[f"{v['median']:.0f}" for v in throughput], fontsize=8)
    rate.set_xticks(range(len(throughput)))
    rate.set_xticklabels([_wrap(v["label"].split(", ", 1)[-1], 14) for v in throughput],
                         fontsize=7)
    rate.set_ylabel("completed orders/s")
    target = next((g["goal"] for k, g in goals.items() if k.startswith("completed")), None)
    if target is not None:
        rate.axhline(target, color="#b03030", linestyle="--", linewidth=1)
    figure.suptitle(f"{name} (N={result.get('n')}, median of {result.get('rounds')} rounds)",
                    fontsize=9)
    figure.tight_layout()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _wrap(label: str, width: int = 22) -> str:
    words, lines, line = label.split(), [], ""
    for word in words:
        if line and len(line) + len(word) + 1 > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    return "\n".join(lines)
