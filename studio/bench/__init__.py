"""`kontext-studio bench`: the numbers in the README's Numbers section, measured on this machine.

Poll (the engine beside the official SDK's `run()`), compare, load, intake, Keep the rest
(`regions`), cold start, and with
`--drill` the fault drill. Everything runs on loopback against the simulator. May import
anything of ours (it is a composition root like `cli`), and `gradio_client`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import sys
import time
from typing import Any

from studio.bench.rig import machine

SECTIONS = ("poll", "process", "compare", "load", "page", "intake", "regions", "cold")
# The process row's tasks: real seconds (a process's start does not scale with --scale).
PROCESS_TASK_S = 4.0
# Edits sent at once in the load row (each a burst of its own), unless --edits says otherwise.
LOAD_SIZES = (100, 500)


def run_bench(args: argparse.Namespace) -> int:
    """Run the chosen sections, print the table, write JSON if asked; the exit code."""
    from studio.simulator import Simulator

    only = set(args.only or SECTIONS)
    load_sizes = LOAD_SIZES if args.edits is None else (args.edits,)
    if args.edits is None:
        args.edits = 500
    report: dict[str, Any] = {"machine": machine(), "scale": args.scale}
    say = _say(args.quiet)
    started = time.monotonic()
    sim = Simulator(api_key="sk-bench", latency="fast", balance_cents=10**9)
    sim.render_ahead = True  # results are ready when tasks complete, as on the real service
    sim.start()
    try:
        if args.drill:
            from studio.bench.drill import run_drill

            target = "the engine alone" if args.engine_only else "the studio"
            say(f"Fault drill: {args.edits} edits through {target}, a quarter of calls faulted")
            report["drill"] = [
                run_drill(
                    sim, edits=args.edits, kill=kill, engine_only=args.engine_only, say=say
                ).as_dict()
                for kill in (False, True)
            ]
        else:
            report |= _measure(sim, args, only, say, load_sizes)
    except RuntimeError as exc:  # a missing optional dependency, or a child that did not start
        sys.stderr.write(f"kontext-studio: error: {exc}\n")
        return 1
    finally:
        sim.stop()
    report["seconds"] = time.monotonic() - started
    sys.stdout.write(format_report(report))
    if args.json_file is not None:
        args.json_file.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def _measure(
    sim: Any, args: argparse.Namespace, only: set[str], say: Any, load_sizes: tuple[int, ...]
) -> dict[str, Any]:
    report: dict[str, Any] = {}
    if "poll" in only:
        from studio.bench.poll import run_poll

        say(f"Poll: studio vs SDK, time x{args.scale:g}")
        report["poll"] = asyncio.run(
            run_poll(sim, scale=args.scale, rounds=args.rounds, warmup=args.warmup, say=say)
        )
    if "process" in only:
        from studio.bench.process import run_processes

        say("Process: one edit per new process, the CLI beside an SDK script")
        report["process"] = run_processes(
            sim, task_s=PROCESS_TASK_S, runs=args.rounds, model="pro", say=say
        )
    if "compare" in only:
        from studio.bench.poll import run_compare

        say("Compare: pro and max side by side")
        report["compare"] = asyncio.run(
            run_compare(
                sim, scale=args.scale, rounds=args.rounds, warmup=max(3, args.warmup), say=say
            )
        )
    if "load" in only:
        from studio.bench.load import run_load

        say(f"Load: {' then '.join(map(str, load_sizes))} edits at once through the studio")
        report["load"] = run_load(sizes=load_sizes, pages=args.pages, task_s=3.0, say=say)
    if "page" in only:
        from studio.bench.page import run_page

        say("Page: load to usable beside bare Gradio, Enter to feedback")
        report["page"] = run_page(args.rounds, say)
    if "intake" in only:
        from studio.bench.intake import run_intake

        say("Intake: a 24-megapixel JPEG")
        report["intake"] = run_intake()
    if "regions" in only:
        from studio.bench.regions import run_regions

        report["regions"] = run_regions(sim, say=say)
    if "cold" in only:
        from studio.bench.coldstart import run_cold_start

        say("Cold start: the command to a page that answers")
        report["cold_start"] = run_cold_start()
    return report


def _say(quiet: bool) -> Any:
    def say(message: str) -> None:
        if not quiet:
            print(message, file=sys.stderr, flush=True)

    return say


def format_report(report: dict[str, Any]) -> str:
    """The tables, as Markdown (the README's Numbers section pastes them)."""
    m = report["machine"]
    lines = [
        f"{m['date']}, {m['cpus']} cores ({m['cpu']}), Python {m['python']}, "
        f"{report['seconds']:.0f} s",
        "",
    ]
    if poll := report.get("poll"):
        lines += [
            f"Edit, one at a time: time to result / task duration, detection delay, status reads "
            f"(medians; range). Time x{report['scale']:g}.",
            "",
            "| task | client | result / task | delay ms | reads |",
            "| --- | --- | ---: | ---: | ---: |",
        ]
        for row in [*poll["rows"], *poll["shift"]]:
            ratio, delay, reads = row["result_over_task"], row["delay_s"], row["reads"]
            lines.append(
                f"| {row['task']} | {row['client']} | {_range(ratio, '.2f')} "
                f"| {_range(delay, '.0f', 1000)} | {_range(reads, '.0f')} |"
            )
        lines.append("")
    if process := report.get("process"):
        pairs = zip(process["studio_wall_s"], process["sdk_wall_s"], strict=True)
        walls = ", ".join(f"{a:.2f}/{b:.2f}" for a, b in pairs)
        lines += [
            f"One edit per new process ({process['model']}, {process['task_s']:g} s tasks, a "
            f"{process['source'][0]}x{process['source'][1]} PNG, one data directory from "
            f"empty): wall seconds, CLI/SDK script, in order: {walls}. The CLI's wall beyond "
            f"the step's own time: {_range(process['cli_overhead_s'], '.2f')} s.",
            "",
        ]
    if compare := report.get("compare"):
        lines += [
            f"Compare: pro ({compare['pro_task_s']:g} s) and max ({compare['max_task_s']:g} s) "
            f"together {compare['pair_s']['median']:.2f} s, max alone "
            f"{compare['max_alone_s']['median']:.2f} s: ratio {compare['ratio']:.2f} "
            f"(the pair is {compare['pair_over_max_task']:.2f}x max's task).",
            "",
        ]
    if load := report.get("load"):
        lines += _load_lines(load)
    if page := report.get("page"):
        if "skipped" in page:
            lines += [f"Page: not measured ({page['skipped']}).", ""]
        else:
            lines += [
                f"Page (headless Chromium, a new context each time): load to a usable page (the "
                f"canvas showing the session) {_range(page['load_s'], '.2f')} s, the instruction "
                f"bar alone {_range(page['bar_s'], '.2f')} s; a bare Gradio Blocks page "
                f"{_range(page['bare_load_s'], '.2f')} s: {page['load_ratio']:.2f}x "
                f"({page['bar_ratio']:.2f}x for the bar); Enter to the "
                f"first visible change {_range(page['enter_to_feedback_s'], '.3f')} s"
                + (
                    f" ({page['no_feedback']} without any within 30 s)"
                    if page["no_feedback"]
                    else ""
                )
                + ".",
                "",
            ]
    if intake := report.get("intake"):
        lines += [
            f"Intake: a {intake['megapixels']:g} MP JPEG ({intake['file_mb']:.1f} MB) accepted "
            f"in {intake['accept_s']:.2f} s and prepared for upload in {intake['prepare_s']:.2f} s "
            f"({intake['upload_size'][0]}x{intake['upload_size'][1]}); peak memory "
            f"+{intake['peak_over_base_mb']:.0f} MB.",
            "",
        ]
    if regions := report.get("regions"):
        from studio.bench.regions import format_regions

        lines += format_regions(regions)
    if cold := report.get("cold_start"):
        top = ", ".join(f"{name} {s:.2f} s" for name, s in list(cold["top_imports_s"].items())[:4])
        lines += [
            f"Cold start: {cold['seconds']:.1f} s from the command to a page that answers "
            f"(median of {len(cold['all_s'])}), {cold['ratio']:.2f}x a bare Gradio Blocks app "
            f"started the same way ({statistics.median(cold['bare_gradio_s']):.1f} s); "
            f"imports {cold['imports_s']:.1f} s of a profiled "
            f"{cold['profiled_s']:.1f} s: {top}.",
            "",
        ]
    for drill in report.get("drill", []):
        lines += _drill_lines(drill)
    return "\n".join(lines)


def _load_lines(load: dict[str, Any]) -> list[str]:
    """The load row's table (each burst, then the bare Gradio endpoint's beside it) and the
    idle pages' memory."""
    lines = [
        f"Load: edits sent at once to `/edit_image` ({load['task_s']:g} s tasks; the studio, "
        "the simulator and a raw-HTTP client each in its own process), after "
        "4 one at a time. Overhead is the time to result beyond the task. Each burst is "
        "followed by as many to a bare Gradio `/edit_image` that only waits the task's "
        "time (bare Gradio): Gradio's own floor on this machine.",
        "",
        "| edits | failed | overhead median | p95 | studio CPU / edit | its floor | "
        "simulator CPU / edit | client CPU / edit | studio peak RSS | load average |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    bare_rows = load.get("bare_rows") or [None] * len(load["rows"])
    for row, bare in zip(load["rows"], bare_rows, strict=True):
        lines.append(
            _load_row(str(row["edits"]), row, f"{row['simulator_cpu_per_edit_s'] * 1000:.0f} ms")
        )
        if bare is not None:
            lines.append(_load_row(f"{bare['edits']} (bare Gradio)", bare, "-"))
    idle = load["idle"]
    lines += [
        "",
        f"{idle['per_page_kb'] / 1024:.2f} MB per idle page ({idle['pages']} Chromium pages)."
        if idle.get("pages")
        else f"Idle pages not measured ({idle.get('skipped', 'none asked')}).",
        "",
    ]
    return lines


def _load_row(edits: str, row: dict[str, Any], simulator: str) -> str:
    overhead = row["overhead_s"]
    return (
        f"| {edits} | {row['failed']} | {overhead['median']:.2f} s "
        f"| {overhead['p95']:.2f} s | {row['studio_cpu_per_edit_s'] * 1000:.0f} ms "
        f"| {row['studio_floor_s']:.2f} s | {simulator} "
        f"| {row['client_cpu_per_edit_s'] * 1000:.0f} ms | {row['peak_rss_mb']:.0f} MB "
        f"| {row['load_average']:.1f} |"
    )


def _drill_lines(drill: dict[str, Any]) -> list[str]:
    """One run of the fault drill, in a paragraph."""
    faults = ", ".join(f"{k} {v}" for k, v in sorted(drill["faults"].items()))
    return [
        f"Drill ({'SIGKILL halfway' if drill['killed'] else 'no kill'}): {drill['edits']} "
        f"edits -> {drill['completed']} stored, {drill['failed_with_reason']} failed with a "
        f"reason, {drill['refused']} refused to their caller, {drill['vanished']} vanished; "
        f"created twice {drill['created_twice']}, stored twice {drill['stored_twice']}, "
        f"orphan tasks {drill['orphan_tasks']}; charged without an image "
        f"{drill['charged_without_image']}; {drill['create_requests']} create requests for "
        f"{drill['tasks']} tasks; answers afterwards: "
        f"{'yes' if drill['answered_after'] else 'NO'}. Faults: {faults}. "
        f"{drill['seconds']:.0f} s.",
        "",
    ]


def _range(stats: dict[str, float], fmt: str, factor: float = 1.0) -> str:
    if math.isnan(stats["median"]):
        return "-"
    low, mid, high = (format(stats[k] * factor, fmt) for k in ("min", "median", "max"))
    return mid if low == high else f"{mid} ({low}-{high})"


__all__ = ["SECTIONS", "format_report", "run_bench"]
