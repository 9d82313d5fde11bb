"""The Hugging Face Space's entry point (the README's front matter names it: `app_file: app.py`).

A Space runs `python app.py` from the repository root, so `studio` is imported from this checkout
(`requirements.txt` installs what it needs; the Space's `sdk_version` installs Gradio). The studio
starts in hosted mode; on a Space (SPACE_ID set) it listens on 0.0.0.0:7860, where the Space sends
its visitors. The Space's variables and secrets configure it (README: "Host it"). Any other
`kontext-studio` options may follow, e.g. `python app.py --port 7870`.
"""

import sys

from studio.cli import main

if __name__ == "__main__":
    sys.exit(main(["--hosted", *sys.argv[1:]]))
