"""Cold start: seconds from `kontext-studio` to a page that answers, and where the time goes.

Each run is a new process with a new data directory (no key, so it also starts the simulator);
one more run with `-X importtime` splits the time by top-level import.
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from studio.bench.rig import StudioProcess

_IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


# A bare Gradio Blocks app started the same way (a new Python, launch, first page answered).
BARE_GRADIO = r"""
import sys
import gradio as gr
with gr.Blocks(analytics_enabled=False) as demo:
    text = gr.Textbox(label="Instruction")
    image = gr.Image(type="filepath")
    text.submit(lambda t: None, text, image)
demo.launch(server_name="127.0.0.1", server_port=int(sys.argv[1]), quiet=True)
"""


class BareGradio(StudioProcess):
    """`BARE_GRADIO` as a child process on a free port: the floor a Gradio app starts at."""

    def start(self, *, python_args: Sequence[str] = ()) -> float:
        self.home.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, *python_args, "-c", BARE_GRADIO, str(self.port)],
                env=self._env,
                stdout=log,
                stderr=log,
            )
        self.wait_until_answers(started)
        return time.monotonic() - started


def run_cold_start(rounds: int = 3) -> dict[str, Any]:
    """The median of `rounds` starts, each beside a bare Gradio app's (in turn), and the import
    profile of one more."""
    times: list[float] = []
    bare: list[float] = []
    with tempfile.TemporaryDirectory(prefix="kontext-bench-") as tmp:
        for n in range(rounds):
            for kind, out in ((StudioProcess, times), (BareGradio, bare)):
                child = kind(Path(tmp) / f"home-{kind.__name__}-{n}")
                try:
                    out.append(child.start())
                finally:
                    child.stop()
        studio = StudioProcess(Path(tmp) / "home-profile", env={"PYTHONPROFILEIMPORTTIME": "1"})
        try:
            profiled_s = studio.start()
        finally:
            studio.stop()
        imports = top_imports(studio.log_path.read_text(errors="replace"))
    return {
        "seconds": statistics.median(times),
        "all_s": times,
        "bare_gradio_s": bare,
        "ratio": statistics.median(a / b for a, b in zip(times, bare, strict=True)),
        "profiled_s": profiled_s,
        "imports_s": sum(imports.values()),
        "top_imports_s": dict(list(imports.items())[:8]),
        "python": sys.version.split()[0],
    }


def top_imports(log: str) -> dict[str, float]:
    """Seconds per import entered from our code (`gradio`, `httpx`, ...), and our own modules'
    self time as `studio`, from `-X importtime` output."""
    rows: list[tuple[int, float, float, str]] = []
    for line in log.splitlines():
        if match := _IMPORT_LINE.match(line):
            depth = (len(match.group(3)) - 1) // 2
            rows.append((depth, int(match.group(1)) / 1e6, int(match.group(2)) / 1e6, match[4]))
    seconds: defaultdict[str, float] = defaultdict(float)
    # The output lists children before their parent; read it backwards to know the parent.
    path: list[str] = []
    for depth, self_s, cumulative_s, name in reversed(rows):
        del path[depth:]
        ours = name == "studio" or name.startswith("studio.")
        if ours:
            seconds["studio"] += self_s
        elif all(p == "studio" or p.startswith("studio.") for p in path):
            seconds[name] += cumulative_s
        path.append(name)
    return dict(sorted(seconds.items(), key=lambda item: -item[1]))
