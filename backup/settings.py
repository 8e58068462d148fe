"""Settings of a command from three places, in this order: the command line, environment
variables (``N8N_BACKUP_`` + the option's name, e.g. ``N8N_BACKUP_KEY_STORE``), and an optional
TOML file (``--config FILE``, ``N8N_BACKUP_CONFIG``, or ``n8n-backup.toml`` in the current
folder) with the same names, at the top level for every command or in a table per command:

    key-store = "/backups/n8n-keys"
    [snapshot]
    snapshots = "/backups/n8n/snapshots"

Hidden old spellings of options are not settings; they work on the command line only.
"""

from __future__ import annotations

import argparse
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from backup.errors import InputError

ENV_PREFIX = "N8N_BACKUP_"
CONFIG_ENV = "N8N_BACKUP_CONFIG"
DEFAULT_CONFIG = Path("n8n-backup.toml")
NOT_SETTINGS = {"help", "config", "show-settings"}
# Options that change what a command may destroy: only ever from the command line, where the
# operator sees them (a variable set for one command must not arm another).
COMMAND_LINE_ONLY = {"force", "overwrite", "resume"}
# Per command: restore's --container turns a workflows-only restore into a full one, and
# list's turns a listing of snapshots into one of rollback copies.
COMMAND_LINE_ONLY_FOR = {"restore": {"container"}, "list": {"container"}}
TRUE, FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}


def setting_name(action: argparse.Action) -> str | None:
    """The name an option goes by in the environment and the file: its long option without
    the dashes; None for positionals, hidden aliases and the meta options."""
    if action.help == argparse.SUPPRESS:
        return None
    longs = [o for o in action.option_strings if o.startswith("--")]
    name = longs[0][2:] if longs else None
    return None if name in NOT_SETTINGS | COMMAND_LINE_ONLY else name


def env_name(name: str) -> str:
    """``key-store`` -> ``N8N_BACKUP_KEY_STORE``."""
    return ENV_PREFIX + name.upper().replace("-", "_")


def read_config(
    path: Path | None, environ: Mapping[str, str]
) -> tuple[dict[str, Any], Path | None]:
    """The settings file: ``path``, else $N8N_BACKUP_CONFIG, else ./n8n-backup.toml if it
    exists; an explicitly named file must exist."""
    named = path or (Path(environ[CONFIG_ENV]) if environ.get(CONFIG_ENV) else None)
    chosen = named or (DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None)
    if chosen is None:
        return {}, None
    try:
        with open(chosen, "rb") as handle:
            return tomllib.load(handle), chosen
    except OSError as exc:
        raise InputError(f"cannot read the settings file {chosen}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"the settings file {chosen} is not valid TOML: {exc}") from None


def _given_on_command_line(action: argparse.Action, argv: Sequence[str]) -> bool:
    return any(
        arg == option or arg.startswith(option + "=")
        for arg in argv
        for option in action.option_strings
    )


def _convert(action: argparse.Action, name: str, value: object, where: str) -> object:
    """A value from the environment (text) or the file (TOML types) as the option holds it."""
    if isinstance(action, argparse._StoreTrueAction):
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in TRUE | FALSE:
            return text in TRUE
        raise InputError(f"{name} in {where} must be true or false, not {value!r}")
    if isinstance(action, argparse._AppendAction):  # a list: TOML's, or space-separated text
        items = value if isinstance(value, list) else str(value).split()
        return [_convert_one(action, name, item, where) for item in items]
    if isinstance(value, (dict, list, bool)):
        raise InputError(f"{name} in {where} must be a single value, not {value!r}")
    converted = _convert_one(action, name, value, where)
    if action.nargs is not None and action.nargs not in ("?", 1):
        return [converted]
    return converted


def _convert_one(action: argparse.Action, name: str, value: object, where: str) -> object:
    if isinstance(value, (dict, list, bool)):
        raise InputError(f"{name} in {where} must be a single value, not {value!r}")
    text = str(value)
    convert = action.type if callable(action.type) else str
    try:
        converted = convert(text)
    except (TypeError, ValueError):
        raise InputError(f"{name} in {where} is not a valid value: {value!r}") from None
    if action.choices is not None and converted not in action.choices:
        raise InputError(f"{name} in {where} must be one of {', '.join(map(str, action.choices))}")
    return converted


def apply_settings(
    command: argparse.ArgumentParser,
    command_name: str,
    args: argparse.Namespace,
    argv: Sequence[str],
    environ: Mapping[str, str],
    config: Mapping[str, Any],
    config_path: Path | None,
) -> dict[str, str]:
    """Fill the options of ``command`` that the command line did not give, from the
    environment, then the file; return where each setting's value came from."""
    table = config.get(command_name, {})
    if not isinstance(table, dict):
        raise InputError(f"[{command_name}] in {config_path} must be a table of settings")
    known = {name for action in command._actions if (name := setting_name(action))}
    for key in table:
        if key not in known:
            raise InputError(
                f"unknown setting {key!r} in [{command_name}] of {config_path}: the names are "
                f"the long options of {command_name} without the dashes"
            )
    # Given under any spelling (an old hidden alias shares the dest) means given.
    given = {action.dest for action in command._actions if _given_on_command_line(action, argv)}
    origins: dict[str, str] = {}
    for action in command._actions:
        name = setting_name(action)
        if name is None or name in COMMAND_LINE_ONLY_FOR.get(command_name, set()):
            continue
        if action.dest in given:
            origins[name] = "command line"
        elif env_name(name) in environ:
            value = _convert(action, name, environ[env_name(name)], env_name(name))
            setattr(args, action.dest, value)
            origins[name] = f"environment {env_name(name)}"
        elif name in table or (name in config and not isinstance(config[name], dict)):
            where = f"[{command_name}] of {config_path}" if name in table else str(config_path)
            raw = table[name] if name in table else config[name]
            setattr(args, action.dest, _convert(action, name, raw, where))
            origins[name] = f"file {where}"
        else:
            origins[name] = "default"
    return origins


def unknown_top_level(
    config: Mapping[str, Any], settings: set[str], commands: set[str]
) -> list[str]:
    """Keys of the file that are neither a setting of some command nor a command's table."""
    return [
        key
        for key, value in config.items()
        if not (isinstance(value, dict) and key in commands) and key not in settings
    ]


def describe(
    args: argparse.Namespace, command: argparse.ArgumentParser, origins: dict[str, str]
) -> str:
    """One line per setting: its value and where it came from (for --show-settings)."""
    lines = []
    for action in command._actions:
        name = setting_name(action)
        if name is not None and name in origins:  # a setting of this command
            value = masked(getattr(args, action.dest, None))
            lines.append(f"{name} = {value!r}  ({origins.get(name, 'default')})")
    return "\n".join(lines)


def masked(value: object) -> object:
    """A DSN with its password replaced by ***, in URI or key=value form, and a URL's path
    (a webhook's token) hidden: settings are printed, secrets never."""
    if isinstance(value, list):
        return [masked(item) for item in value]
    if not isinstance(value, str):
        return value
    hook = re.fullmatch(r"((?:slack\+|ping\+)?https?://[^/]+)/.+", value)
    if hook:  # a webhook's path is its token
        return f"{hook.group(1)}/***"
    text = re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]+)", r"\1***", value)
    if "://" in text:
        scheme, _, rest = text.partition("://")
        netloc, slash, path = rest.partition("/")
        userinfo, at, hostport = netloc.rpartition("@")
        if at and ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
            text = f"{scheme}://{userinfo}@{hostport}{slash}{path}"
    return text
