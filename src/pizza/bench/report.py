"""Show results: a rich table per scenario, and (optionally) a PNG bar chart per scenario."""

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
    if ratios:
        lines = []
        for ratio_name, ratio in ratios.items():
            goal = ratio.get("goal")
            verdict = ""
            if goal is not None:
                verdict = (f"  goal >= {goal:g} " +
                           ("[green]met[/]" if ratio.get("met") else "[red]missed[/]"))
            per_round = ", ".join(f"{r:.2f}" for r in ratio["rounds"])
            lines.append(f"{ratio_name} = [bold]{ratio['median']:.2f}[/] "
                         f"(rounds {per_round}){verdict}")
        out.caption = "\n".join(lines)
        out.caption_justify = "left"
    return out


def show(console: Console, name: str, result: dict[str, Any]) -> None:
    console.print(table(name, result))
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
