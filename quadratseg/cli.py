"""Entry-point helper shared by every stage CLI (``python -m <module>.<stage>``).

A stage script is a thin, typed, docstring'd function; :func:`run` loads the settings,
sets the offline switches before any framework import, configures logging once and
hands the function to fire (which turns its docstring into ``--help``).

The helpers below are for entry points only (library code takes values as arguments):

- :func:`current_settings`: the settings :func:`run` loaded (one ``.env`` read per process).
- :func:`as_name` / :func:`as_names`: fire reads ``2024`` as an int and ``1,2`` as a tuple; names
  and comma-separated lists come back as ``str`` and ``list[str]``. :func:`run` already hands
  every ``str`` parameter its text as typed.
- :func:`output_path`, :func:`data_path`: an output the user did not give goes under
  ``QUADRATSEG_OUTPUTS_DIR`` (runs, reports, zips) or ``QUADRATSEG_DATA_DIR`` (prepared layouts).
- :func:`weights_path`: a relative weights path missing from the current folder is looked up
  in ``QUADRATSEG_MODELS_DIR``.
- :func:`device`: ``auto`` (or nothing) on the command line means ``QUADRATSEG_DEVICE``.
- :func:`variadic_words_as_text`: a command's ``*args`` (folders named ``2019``) reach it as typed.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, get_args, get_type_hints

from quadratseg.errors import QuadratsegError, SettingsError
from quadratseg.offline import apply_offline_environment
from quadratseg.settings import Settings, load_settings

logger = logging.getLogger("quadratseg")

_settings: Settings | None = None
_TEXT_TYPES = (str, str | None)


def configure_logging(level: str = "INFO") -> None:
    """Configure the root handler once (CLIs only; library code only creates loggers)."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
        root.addHandler(handler)
    root.setLevel(level.upper())


# settings left empty take the first of these files present in QUADRATSEG_MODELS_DIR (quadratseg.weights).
# SAM_CHECKPOINT is not among them: an empty one means "no SAM refinement", a choice of its own.
MODEL_DEFAULTS = {"lama_model": ("big-lama",)}


def with_model_paths(settings: Settings) -> Settings:
    """The settings with relative weight files (LAMA_MODEL, SAM_CHECKPOINT, DINOV2_CHECKPOINT)
    looked up in ``QUADRATSEG_MODELS_DIR`` when they are not found from the current folder; an
    empty LAMA_MODEL takes its standard file (big-lama.pt) from there when present (logged)."""
    from quadratseg.weights import weights_file

    changes = {
        name: Path(weights_path(value, settings))
        for name in ("lama_model", "sam_checkpoint", "dinov2_checkpoint")
        if (value := getattr(settings, name)) is not None
    }
    for name, keys in MODEL_DEFAULTS.items():
        if getattr(settings, name) is not None:
            continue
        found = [p for key in keys if (p := Path(settings.models_dir) / weights_file(key).filename).is_file()]
        if found:
            logger.info("%s not set: using %s from QUADRATSEG_MODELS_DIR", name.upper(), found[0])
            changes[name] = found[0]
    return settings.replace(**changes)


def bootstrap() -> Settings:
    """Load settings, set the offline switches and logging; return the settings.

    Raises:
        SettingsError: a bad value in ``.env`` or the environment (the message names the variable).
    """
    global _settings
    settings = with_model_paths(load_settings())
    apply_offline_environment(settings)
    configure_logging(settings.log_level)
    _settings = settings
    return settings


def current_settings() -> Settings:
    """The settings :func:`bootstrap` loaded; loaded now when a CLI function is called from Python."""
    return _settings if _settings is not None else with_model_paths(load_settings())


def as_name(value: Any) -> str | None:
    """A dataset, project, task or label name as the user typed it (``None`` stays ``None``).

    Examples:
        >>> as_name(2024), as_name(("a", "b")), as_name(None)
        ('2024', 'a,b', None)
    """
    if value is None:
        return None
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def as_names(value: Any) -> list[str]:
    """Comma-separated names (text, or the tuple fire makes of ``1,2``) -> a list of ``str``.

    Examples:
        >>> as_names("val, test"), as_names((1, 2)), as_names(None)
        (['val', 'test'], ['1', '2'], [])
    """
    if value is None:
        return []
    items = value if isinstance(value, list | tuple) else [value]
    return [part.strip() for item in items for part in str(item).split(",") if part.strip()]


def output_path(path: str | Path | None, default: str | Path, settings: Settings | None = None) -> Path:
    """``path`` as given (relative to the current folder), else ``default`` under QUADRATSEG_OUTPUTS_DIR."""
    if path not in (None, ""):
        return Path(path)
    settings = settings or current_settings()
    return Path(settings.outputs_dir) / default


def data_path(path: str | Path | None, default: str | Path, settings: Settings | None = None) -> Path:
    """``path`` as given (relative to the current folder), else ``default`` under QUADRATSEG_DATA_DIR."""
    if path not in (None, ""):
        return Path(path)
    settings = settings or current_settings()
    return Path(settings.data_dir) / default


def weights_path(path: str | Path | None, settings: Settings | None = None) -> str | None:
    """A weights file as given when it exists (or is absolute); a relative one missing from the
    current folder but present in QUADRATSEG_MODELS_DIR comes from there. Nothing is downloaded."""
    if path is None or str(path) == "":
        return None
    given = Path(str(path)).expanduser()
    if given.is_absolute() or given.exists():
        return str(given)
    settings = settings or current_settings()
    candidate = Path(settings.models_dir) / given
    return str(candidate) if candidate.exists() else str(given)


def device(value: str | None = None, settings: Settings | None = None) -> str:
    """The device of a command: the one given, or QUADRATSEG_DEVICE when ``auto`` or nothing is given."""
    if value in (None, "", "auto"):
        settings = settings or current_settings()
        return settings.device
    return str(value)


def pin_device(value: str) -> str:
    """Make ``value`` the only device frameworks without a device option see (mmengine's Runner
    places the model on "the" device): ``cpu`` hides the GPUs, ``cuda:N`` shows GPU N alone.

    Sets ``CUDA_VISIBLE_DEVICES`` before CUDA starts (process set-up, like the offline switches);
    returns the device name to use from now on (``cuda:N`` becomes ``cuda:0``, the GPU left).
    """
    import os

    if value == "cpu":
        visible = ""
    elif value.startswith("cuda:") and value[5:].isdigit():
        visible = value[5:]
    else:
        return value
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        logger.warning("CUDA started before the device was chosen: QUADRATSEG_DEVICE=%s may not apply", value)
        return value
    os.environ["CUDA_VISIBLE_DEVICES"] = visible
    return "cpu" if value == "cpu" else "cuda:0"


def keep_text_arguments(func: Callable[..., Any]) -> Callable[..., Any]:
    """Tell fire to pass every ``str`` (or ``str | None``) parameter of ``func`` its text as typed.

    Without it fire turns ``--dataset 2024`` into an int and ``--tags 1,2`` into a tuple.
    """
    from fire import decorators

    try:
        hints = get_type_hints(func)
    except Exception:  # an annotation that cannot be resolved: leave fire's parsing as it is
        return func
    names = [name for name, hint in hints.items() if name != "return" and hint in _TEXT_TYPES]
    if names:
        decorators.SetParseFn(str, *names)(func)
    return func


def variadic_words_as_text(func: Callable[..., Any]) -> Callable[..., Any]:
    """Tell fire to pass ``func``'s ``*args`` as typed: a folder named ``2019`` is a path, not an
    int (fire parses a variadic argument with its default parse function only); its keyword-only
    options keep fire's parsing (numbers, flags), and :func:`keep_text_arguments` keeps the text ones."""
    import inspect

    from fire import decorators, parser

    options = {
        name: parser.DefaultParseValue
        for name, parameter in inspect.signature(func).parameters.items()
        if parameter.kind is parameter.KEYWORD_ONLY
    }
    decorators.SetParseFn(str)(func)
    return decorators.SetParseFns(**options)(func)


def negated_flags(
    component: Callable[..., Any] | dict[str, Callable[..., Any]], argv: list[str]
) -> list[str]:
    """``--no-NAME`` -> ``--NAME=False`` for a boolean parameter ``NAME`` of the function called
    (fire itself only knows ``--noNAME``); other words are left as they are.

    Examples:
        >>> def train(data: str, tensorboard: bool = True, from_scratch: bool = False): ...
        >>> negated_flags(train, ["d.yaml", "--no-tensorboard", "--from-scratch", "--no-such"])
        ['d.yaml', '--tensorboard=False', '--from-scratch', '--no-such']
        >>> def test(resume: bool | str = False): ...
        >>> negated_flags(test, ["--no_resume", "--no-data"])
        ['--resume=False', '--no-data']
    """
    func = component
    if isinstance(component, dict):
        func = component.get(argv[0]) if argv else None
    if not callable(func):
        return argv
    try:
        hints = get_type_hints(func)
    except Exception:
        return argv
    flags = {name.replace("_", "-") for name, hint in hints.items() if hint is bool or bool in get_args(hint)}
    out = []
    for word in argv:
        name = word[5:] if word.startswith(("--no-", "--no_")) else None
        if name is not None and name.replace("_", "-") in flags:
            out.append(f"--{name.replace('-', '_')}=False")
        else:
            out.append(word)
    return out


def prepare(component: Callable[..., Any] | dict[str, Callable[..., Any]]) -> Any:
    """``component`` (a function, or a dict of them) ready for fire: text parameters stay text."""
    if isinstance(component, dict):
        return {key: prepare(value) for key, value in component.items()}
    return keep_text_arguments(component) if callable(component) else component


def run(
    component: Callable[..., Any] | dict[str, Callable[..., Any]],
    name: str | None = None,
    command: Sequence[str] | None = None,
) -> None:
    """Run ``component`` as a fire CLI; bad settings and project errors become one clear line and
    exit code 2. ``command`` replaces ``sys.argv[1:]`` (tests)."""
    import fire

    try:
        bootstrap()
    except SettingsError as exc:
        configure_logging("INFO")
        logger.error("%s", exc)
        sys.exit(2)
    argv = sys.argv[1:] if command is None else list(command)
    try:
        fire.Fire(prepare(component), command=negated_flags(component, argv), name=name)
    except QuadratsegError as exc:  # a batch with failed images (outputs written) exits 3
        if getattr(exc, "summary", None) is not None:
            sys.stdout.write(f"{exc.summary}\n")
        logger.error("%s", exc)
        sys.exit(getattr(exc, "exit_code", 2))
