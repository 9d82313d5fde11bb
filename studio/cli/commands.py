"""The edit commands: edit, chain, compare, generate and replay, each as one engine use case.

Imports `engine`, `history`, `params` and its siblings. Every input is checked before the engine
starts (`plan_*`), so bad input writes nothing: no session, no file.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from studio.cli.errors import EXIT_FAILED, EXIT_OK, CommandError
from studio.cli.output import Output, StepOutcome, edits_document, result_name, short_id
from studio.config import Settings
from studio.engine import Engine, Phase, StepUpdate
from studio.history import Session, Step, StepState, made_name
from studio.images import SourceImage
from studio.params import EditParams, Model, RegionRequest, format_cents, parse_box, parse_params


@dataclass(slots=True)
class Run:
    """What a running command holds: the engine, its output, and the steps not yet finished."""

    engine: Engine
    out: Output
    # Steps this command started that have not finished: an interruption leaves them in the
    # history (queued or running), and the studio completes them at its next start.
    unfinished: set[str] = field(default_factory=set)
    # The edits go to the built-in simulator (no key is set): the JSON answer says so.
    simulator: bool = False


@dataclass(frozen=True, slots=True)
class Job:
    """A checked command, ready to run; `needs_service` is False for history-only commands."""

    run: Callable[[Run], Awaitable[int]]
    needs_service: bool = True


@dataclass(frozen=True, slots=True)
class SourceArg:
    """SOURCE as given: bytes read from a file (or stdin), or a link fetched later."""

    label: str
    data: bytes | None = None
    link: str | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """Where results go: a folder, and for single-result commands perhaps an exact file."""

    folder: Path
    file: Path | None = None

    def path_for(self, name: str) -> Path:
        return self.file or self.folder / name


# -- planning: every check that needs no engine -------------------------------------------------


def plan_edit(args: argparse.Namespace, settings: Settings) -> Job:
    target = _target(args.output, single=True)
    params = _params(args, args.prompt, editing=True, output_format=_format(args, target))
    region = _region(args, settings)
    source = read_source(args.source, settings)
    return Job(lambda run: _edit(run, source, [params], target, region))


def plan_chain(args: argparse.Namespace, settings: Settings) -> Job:
    chain = [_params(args, prompt, editing=True) for prompt in args.prompts]
    region = _region(args, settings)
    source, target = read_source(args.source, settings), _target(args.output, single=False)
    return Job(lambda run: _edit(run, source, chain, target, region))


def plan_generate(args: argparse.Namespace, _settings: Settings) -> Job:
    target = _target(args.output, single=True)
    params = _params(args, args.prompt, editing=False, output_format=_format(args, target))
    return Job(lambda run: _edit(run, None, [params], target))


def plan_compare(args: argparse.Namespace, settings: Settings) -> Job:
    params = _params(args, args.prompt, editing=True, model="pro")
    region = _region(args, settings)
    source, target = read_source(args.source, settings), _target(args.output, single=False)
    return Job(lambda run: _compare(run, source, params, target, region))


def plan_replay(args: argparse.Namespace, settings: Settings) -> Job:
    bundle = read_file(args.bundle, settings.max_upload_bytes * 10, what="export")
    region = _region(args, settings)
    source, target = read_source(args.source, settings), _target(args.output, single=False)
    return Job(lambda run: _replay(run, bundle, source, target, region, keep_rest=args.keep_rest))


def _region(args: argparse.Namespace, settings: Settings) -> RegionRequest | None:
    """--mask or --box as a region (the mask file read now; whether it is an image with
    something marked is checked by the engine before anything is paid)."""
    if getattr(args, "mask", None) is not None:
        return RegionRequest(mask=read_file(args.mask, settings.max_upload_bytes, what="mask"))
    if getattr(args, "box", None) is not None:
        return RegionRequest(box=parse_box(args.box))  # ParamsError: exit 2
    return None


def read_source(value: str, settings: Settings) -> SourceArg:
    """SOURCE as a link, `-` (stdin) or a file; raises `CommandError` for a missing file."""
    if "://" in value:
        return SourceArg(label=made_name(value) or value, link=value)
    if value == "-":
        data = sys.stdin.buffer.read(settings.max_upload_bytes + 1)
        return SourceArg(label="stdin", data=data)
    path = Path(value).expanduser()
    return SourceArg(
        label=made_name(path.name) or "image", data=read_file(path, settings.max_upload_bytes)
    )


def read_file(path: Path, max_bytes: int, *, what: str = "file") -> bytes:
    """The bytes of a file the user named, or one plain sentence saying why not."""
    try:
        if path.is_dir():
            raise CommandError(f"{path} is a folder, not a {what}.")
        if path.stat().st_size > max_bytes:
            raise CommandError(
                f"The {what} {path} is larger than {max_bytes // 2**20} MB; pick a smaller one."
            )
        return path.read_bytes()
    except FileNotFoundError:
        raise CommandError(f"The {what} {path} does not exist.") from None
    except OSError as error:
        raise CommandError(f"The {what} {path} cannot be read ({error.strerror}).") from None


def _params(
    args: argparse.Namespace,
    prompt: str,
    *,
    editing: bool,
    model: Model | None = None,
    output_format: str | None = None,
) -> EditParams:
    params = parse_params(
        prompt,
        model=model if model is not None else args.model,
        aspect_ratio=args.aspect,
        output_format=output_format or args.format or "png",
        keep_rest=getattr(args, "keep_rest", False),
    )
    return params.validated(editing=editing)  # ParamsError: exit 2 before anything is written


# What a file named with -o holds, by its ending.
_FORMAT_OF_SUFFIX = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg"}


def _format(args: argparse.Namespace, target: Target) -> str:
    """The format to ask for: --format, else the -o file's ending's, else PNG. A file named
    with another ending, or one that says another format than --format, is refused: its name
    would say one format and its bytes another (audit 15)."""
    if target.file is None:
        return str(args.format or "png")
    named = _FORMAT_OF_SUFFIX.get(target.file.suffix.lower())
    if named is None:
        raise CommandError(
            f"{target.file.name} does not end in .png or .jpg: the studio writes PNG or JPEG "
            "(or give a folder, ending in /)."
        )
    if args.format is not None and args.format != named:
        raise CommandError(
            f"{target.file.name} names a {named.upper()} file, but --format asks for "
            f"{args.format.upper()}; make them agree."
        )
    return named


def _target(output: str | Path | None, *, single: bool) -> Target:
    if output is None:
        return Target(Path.cwd())
    folder = str(output).endswith(("/", os.sep))  # (one to be made: Path() drops the slash)
    output = Path(output).expanduser()
    if output.is_dir() or folder:
        if output.exists() and not output.is_dir():
            raise CommandError(f"{output} is a file; give a folder for the results.")
        return Target(output)
    if not single:
        if output.exists():
            raise CommandError(f"{output} is a file; give a folder for the results.")
        return Target(output)  # created when the first result is written
    if not output.parent.is_dir():
        raise CommandError(f"The folder {output.parent} does not exist.")
    return Target(output.parent, output)


# -- running ------------------------------------------------------------------------------------


async def follow(run: Run, step: Step, label: str) -> StepOutcome:
    """Show a step's progress until it is final; the outcome says how it ended."""
    run.unfinished.add(step.step_id)
    last: StepUpdate | None = None
    async for update in run.engine.watch(step.step_id):
        run.out.progress(label, update)
        last = update
    if last is None:  # finished before we looked: read it back from the history
        step = (await run.engine.load_session(step.session_id)).steps[step.step_id]
        state = step.state.value
    else:
        # A wait that gave up reports "failed" while the task (and the step) may still run on.
        step, state = last.step, "failed" if last.phase == "failed" else last.step.state.value
    if step.is_finished:
        run.unfinished.discard(step.step_id)
    return StepOutcome(step, state)


async def write_result(
    run: Run, outcome: StepOutcome, target: Target, number: int, tag: str = ""
) -> StepOutcome:
    """Copy a completed step's image out of the store to `target`; the outcome gains its path.

    The default name is `<session-short>-<number>-<slug>[-tag].<png|jpg>`.
    """
    step, result = outcome.step, outcome.step.result
    if outcome.state != StepState.COMPLETED or result is None or step.params is None:
        return outcome
    name = result_name(step.session_id, number, step.params.prompt, result.format, tag)
    data = await run.engine.image_bytes(result)
    path = target.path_for(name)
    wanted = "jpg" if result.format == "jpeg" else result.format
    if target.file is not None and _FORMAT_OF_SUFFIX.get(path.suffix.lower()) != result.format:
        # A JPEG asked for of an image with transparency, kept to a region: it stays a PNG.
        path = path.with_suffix(f".{wanted}")
        run.out.note(
            f"The result keeps the source's transparency, so it is a {wanted.upper()}: "
            f"written to {path.name}."
        )
    if target.file is None and path.exists():
        # A branch of a continued session at the same depth: never write over its sibling.
        path = path.with_stem(f"{path.stem}-{short_id(step.step_id)}")
    await asyncio.to_thread(_write_atomically, path, data)
    raw_path = None
    if step.raw_result is not None:  # kept to a region: the model's own output goes beside it
        raw = step.raw_result
        raw_path = path.with_name(
            f"{path.stem}-raw.{'jpg' if raw.format == 'jpeg' else raw.format}"
        )
        await asyncio.to_thread(_write_atomically, raw_path, await run.engine.image_bytes(raw))
        raw_path = raw_path.resolve()
    return replace(outcome, path=path.resolve(), raw_path=raw_path)


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.part")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        message = f"The result could not be written to {path} ({error.strerror})."
        raise CommandError(message, exit_code=EXIT_FAILED) from None


async def start_session(run: Run, source: SourceArg | None, name: str) -> tuple[Session, str, int]:
    """Where the edits go: the session, the step they start from, and that step's depth.

    A new session holds SOURCE (checked by the engine), or nothing to generate. A SOURCE the
    studio made itself (a result file passed back, as agents do) continues its own session from
    the step that made it; its depth numbers the next results.
    """
    data, link = (source.data, source.link) if source else (None, None)
    session, parent = await run.engine.place_edit(data, link=link, name=made_name(name))
    if parent is None:
        return session, session.current_step_id, 0
    return session, parent, len(session.make_current(parent).path()) - 1


def report(run: Run, session_id: str, outcomes: list[StepOutcome], lines: list[str]) -> int:
    """Say how the edits went: the failure on stderr, the answer on stdout; the exit code."""
    document = edits_document(session_id, outcomes, simulator=run.simulator)
    if document["error"]:
        run.out.error(document["error"])
    run.out.result(lines, document)
    return EXIT_FAILED if document["state"] != "completed" else EXIT_OK


async def _edit(
    run: Run,
    source: SourceArg | None,
    chain: list[EditParams],
    target: Target,
    region: RegionRequest | None = None,
) -> int:
    name = source.label if source else chain[0].prompt
    session, parent_id, depth = await start_session(run, source, name)
    outcomes: list[StepOutcome] = []
    for number, params in enumerate(chain, start=1):
        # Each step names its parent, so an edit made meanwhile in the browser cannot reroute it.
        step = await run.engine.submit_edit(
            session.session_id, params, parent_step_id=parent_id, region=region
        )
        label = params.model if len(chain) == 1 else f"step {number}/{len(chain)} {params.model}"
        outcome = await follow(run, step, label)
        outcomes.append(await write_result(run, outcome, target, depth + number))
        if outcome.state != StepState.COMPLETED:
            break  # the next step would have nothing to start from
        parent_id = step.step_id
    return report(run, session.session_id, outcomes, [str(o.path) for o in outcomes if o.path])


async def _compare(
    run: Run,
    source: SourceArg,
    params: EditParams,
    target: Target,
    region: RegionRequest | None = None,
) -> int:
    session, parent_id, depth = await start_session(run, source, source.label)
    pair = await run.engine.compare(
        session.session_id, params, parent_step_id=parent_id, region=region
    )
    followed = await asyncio.gather(*(follow(run, s, _model(s)) for s in pair))
    outcomes, lines = [], []
    for outcome in followed:
        model = _model(outcome.step)
        outcome = await write_result(run, outcome, target, depth + 1, model)
        outcomes.append(outcome)
        seconds = f"{outcome.step.elapsed_s or 0.0:.1f} s"
        cost = format_cents(outcome.step.cost_cents or 0)
        lines.append(
            f"{model}\t{seconds}\t{cost}\t{outcome.path or 'failed: ' + str(outcome.error)}"
        )
    return report(run, session.session_id, outcomes, lines)


async def _replay(
    run: Run,
    bundle: bytes,
    source: SourceArg,
    target: Target,
    region: RegionRequest | None = None,
    *,
    keep_rest: bool = False,
) -> int:
    image = await start_session_image(run, source)
    finished: list[Step] = []

    def on_step(step: Step) -> None:
        finished.append(step)
        label = f"step {len(finished)} {_model(step)}"
        phase: Phase = "completed" if step.state is StepState.COMPLETED else "failed"
        run.out.progress(label, StepUpdate(step=step, phase=phase, elapsed_s=step.elapsed_s or 0))

    run.unfinished.add("replay")  # the engine names each step only once it is done
    session = await run.engine.replay(
        bundle, image, on_step=on_step, region=region, keep_rest=keep_rest
    )
    run.unfinished.discard("replay")
    outcomes = []
    for number, step in enumerate(finished, start=1):
        outcome = StepOutcome(step, step.state.value)
        outcomes.append(await write_result(run, outcome, target, number))
    return report(run, session.session_id, outcomes, [str(o.path) for o in outcomes if o.path])


async def start_session_image(run: Run, source: SourceArg) -> SourceImage:
    """SOURCE read and checked by the engine (raises `ImageError` with one sentence)."""
    if source.link is not None:
        return await run.engine.read_link(source.link)
    return await run.engine.read_image(source.data or b"")


def _model(step: Step) -> str:
    return step.params.model if step.params else "origin"
