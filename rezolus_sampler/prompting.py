"""How refusals look at an interactive prompt (Copier's and `rezolus-sampler new`'s).

Both front-ends ask through questionary, whose prompt_toolkit session shows a
validator's message in a toolbar one row high: at 80 columns the end of a
message (the "did you mean ...?") is cut off, and a YAML answer that does not
parse is refused with a bare "Invalid input". `install()` swaps that toolbar
for one that wraps the whole message over as many rows as it needs, names
the question first, and replaces "Invalid input" with the YAML parser's own
complaint and how to quote. Only the display changes: what is accepted is
still decided by the validator.
"""

from __future__ import annotations

import importlib
import re

import yaml

COPIER_PREFIX = re.compile(r"^Validation error for question '(\w+)': ")
MAX_ROWS = 8  # a message never pushes the answer being typed off a small terminal

QUOTING = (
    "Quote an expression that contains ': ', ' #' or '? ', or starts with one "
    "of [ { * & ! | > % @ ` ' \": by: \"size > 4096 ? 1 : 0\""
)


def yaml_problem(text: str) -> str:
    """The YAML parser's complaint about `text` with how to fix it ('' if it parses)."""
    try:
        yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        return f"not valid YAML{where}: {problem}. {QUOTING}"
    return ""


def readable(message: str, text: str) -> str:
    """A validator's message as the toolbar shows it."""
    field = ""
    m = COPIER_PREFIX.match(message)
    if m:
        field, message = m.group(1), message[m.end() :]
    if message.strip() == "Invalid input":
        message = yaml_problem(text) or message
    return f"{field}: {message}" if field else message


_installed = False


def install() -> None:
    """Use the wrapping toolbar in prompt sessions created from now on (idempotent)."""
    global _installed
    if _installed:
        return
    try:
        from prompt_toolkit.application.current import get_app
        from prompt_toolkit.filters import has_validation_error
        from prompt_toolkit.layout import ConditionalContainer, Dimension, FormattedTextControl, Window
        # the module: `prompt_toolkit.shortcuts.prompt` is also the name of a function
        pt_prompt = importlib.import_module("prompt_toolkit.shortcuts.prompt")
    except ImportError:  # pragma: no cover - questionary always brings prompt_toolkit
        return

    class WrappingValidationToolbar:
        def __init__(self, show_position: bool = False) -> None:
            def text():
                buffer = get_app().current_buffer
                error = buffer.validation_error
                if not error:
                    return []
                return [("class:validation-toolbar", readable(error.message, buffer.text))]

            self.container = ConditionalContainer(
                content=Window(
                    FormattedTextControl(text),
                    height=Dimension(min=1, max=MAX_ROWS),
                    wrap_lines=True,
                ),
                filter=has_validation_error,
            )

        def __pt_container__(self):
            return self.container

    pt_prompt.ValidationToolbar = WrappingValidationToolbar
    _installed = True
