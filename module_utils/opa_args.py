# Copyright: hardening.docker_authz contributors
# Apache License 2.0 (see LICENSE)
"""opa-args as opa-docker-authz reads them, and what in them would break the plugin.

The plugin reads its arguments with Go's ``flag`` package (``flag.Parse()`` on
``flag.CommandLine``, which exits the process on an error). Go reads them differently from a
search for words:

- it stops at the first word that is not a flag and ignores everything after it, so
  ``-skip-ping false -policy-file X`` leaves the policy file unset: the plugin then ALLOWS EVERY
  REQUEST (it fails open without a policy file);
- a flag given twice takes its last value;
- ``-name=value`` and ``--name value`` are the same flag as ``-name value``;
- a boolean takes its value only as ``-name=false``;
- an unknown flag, ``-h`` or a missing value makes the plugin exit at start: the engine then
  waits out its socket window (about 12.5 s) on every attempt to enable it.

``parse`` reads the words exactly so (the effective values, last one winning) and names every
such problem with its fix. ``flags_of(image)`` is the flag set of the plugin release the image
tag names (from the plugin's ``main.go`` at each tag), or None when the tag does not say which
release it is (edge, latest, a digest, a release before 0.2 or after 0.10): then flags unknown
here are not judged. Standard library only (runs on managed hosts too).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

PLUGIN_NAME = "opa-docker-authz"
ALLOW_PATH = "data.docker.authz.allow"  # the plugin also reads it as /docker/authz/allow
BOOL_FLAGS = ("skip-ping", "version", "check", "quiet", "log-only-denied")
# The release that brought each flag (open-policy-agent/opa-docker-authz main.go at its tags).
# -check came in 0.2.2 (tags name 0.2 without the patch: counted from 0.2); -quiet was added in
# 2020-11 while the version was 0.7, so a 0.7 image may have it (counted from 0.7: never refused
# where it may exist).
FLAG_SINCE: dict[str, tuple[int, int]] = {
    "plugin-name": (0, 2),
    "allowPath": (0, 2),
    "policy-file": (0, 2),
    "version": (0, 2),
    "check": (0, 2),
    "quiet": (0, 7),
    "config-file": (0, 8),
    "skip-ping": (0, 8),
    "log-only-denied": (0, 9),
}
OLDEST_KNOWN, NEWEST_KNOWN = (0, 2), (0, 10)
_GO_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_GO_FALSE = ("0", "f", "F", "FALSE", "false", "False")
_TAG_VERSION = re.compile(r"v?(\d+)\.(\d+)(?:\.\d+)?(?:-.*)?")


@dataclass
class OpaArgs:
    """The flags the plugin ends up with (name without dashes -> value, the last one given) and
    the problems found (each a sentence naming the fix)."""

    values: dict[str, str | bool] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def string(self, name: str) -> str | None:
        value = self.values.get(name)
        return value if isinstance(value, str) else None


def tag_of(image: str) -> str:
    """The tag of an image reference ('' when it has none: ``name``, ``name@sha256:...``)."""
    last = str(image).strip().partition("@")[0].rsplit("/", 1)[-1]
    return last.rpartition(":")[2] if ":" in last else ""


def release_of(image: str) -> tuple[int, int] | None:
    """(major, minor) of the plugin release an image's tag names, None when it does not name one
    (no tag, latest, edge, a digest only, a name that is not a version)."""
    match = _TAG_VERSION.fullmatch(tag_of(image))
    return (int(match.group(1)), int(match.group(2))) if match else None


def flags_for(release: tuple[int, int] | None) -> frozenset[str] | None:
    """The flags of a plugin release; None when unknown (see the module doc)."""
    if release is None or not OLDEST_KNOWN <= release <= NEWEST_KNOWN:
        return None
    return frozenset(name for name, since in FLAG_SINCE.items() if since <= release)


def flags_of(image: str) -> frozenset[str] | None:
    """The flags of the release the image's tag names; None when unknown (see the module doc)."""
    return flags_for(release_of(image))


def words_of(args: str | Sequence[str]) -> list[str]:
    """The words of opa-args: a string (a role variable, a module parameter) is split on
    whitespace, as the role and the authz_plugin module do before they hand the words to the
    engine; a list (the engine's Settings.Args) is taken as it is."""
    return args.split() if isinstance(args, str) else [str(a) for a in args]


def engine_args(values: Sequence[Any] | None) -> list[str]:
    """A plugin's Settings.Args as the plugin receives them, without trailing empty words.

    The engine splits ``opa-args=VALUE`` on single spaces (moby plugin/v2 ``Set``:
    ``strings.Split(value, " ")``), so two spaces or a leading space leave an empty word, at
    which the plugin's flag package stops: ``opa-args= -policy-file X`` runs the plugin without
    a policy file (it allows every request) while its args look right once spaces are
    normalised. So an empty word is kept, except at the end (nothing follows it to ignore; an
    emptied setting is ``[""]``)."""
    words = [str(v) for v in values or []]
    while words and words[-1] == "":
        words.pop()
    return words


def parse(args: str | Sequence[str], known: frozenset[str] | None = None, tag: str = "") -> OpaArgs:
    """Go's ``flag.Parse`` over opa-args. ``known``: the release's flags (``flags_of``), None to
    accept every flag the plugin has ever had and not to judge others; ``tag`` names the release
    in messages."""
    result = OpaArgs()
    words = words_of(args)
    release = f"opa-docker-authz {tag}" if tag else "opa-docker-authz"
    i = 0
    while i < len(words):
        word = words[i]
        if len(word) < 2 or word[0] != "-":
            rest = " ".join(words[i:])
            hint = ""
            before = words[i - 1] if i > 0 else ""
            if before.lstrip("-") in BOOL_FLAGS and word in _GO_TRUE + _GO_FALSE:
                hint = f" A boolean takes its value after '=': write {before}={word}."
            result.problems.append(
                f"the plugin stops reading flags at {word!r} (Go's flag package reads flags only "
                f"up to the first word that is not one) and ignores {rest!r}.{hint}"
            )
            break
        dashes = 2 if word[1] == "-" else 1
        if dashes == 2 and len(word) == 2:
            if i + 1 < len(words):
                result.problems.append(
                    f"the plugin reads no flag after '--' and ignores {' '.join(words[i + 1 :])!r}."
                )
            break
        name, eq, value = word[dashes:].partition("=")
        i += 1
        if not name or name[0] in "-=":
            result.problems.append(f"{word!r} is not a flag (bad syntax); the plugin would exit at start.")
            break
        if name in ("h", "help"):
            result.problems.append(f"{word!r} makes the plugin print its usage and exit at start.")
            break
        if name not in FLAG_SINCE:
            if known is not None:
                result.problems.append(
                    f"{release} has no flag -{name}; the plugin would exit at start "
                    "('flag provided but not defined'). Its flags: "
                    + ", ".join(f"-{n}" for n in sorted(known, key=str.lower))
                    + "."
                )
                break
            # A release the tag does not name may have flags this module does not know. Read one
            # as Go would a boolean, unless a value follows (then as a string flag).
            if eq:
                result.values[name] = value
            elif i < len(words) and not words[i].startswith("-"):
                result.values[name] = words[i]
                i += 1
            else:
                result.values[name] = True
            continue
        if known is not None and name not in known:
            since = ".".join(str(n) for n in FLAG_SINCE[name])
            result.problems.append(
                f"{release} has no flag -{name} (it came in {since}); the plugin would exit at "
                "start. Remove it, or use a newer plugin image."
            )
            break
        if name in BOOL_FLAGS:
            if not eq:
                result.values[name] = True
            elif value in _GO_TRUE or value in _GO_FALSE:
                result.values[name] = value in _GO_TRUE
            else:
                result.problems.append(
                    f"{word!r} is not a boolean (Go reads 1, t, true, 0, f, false and their "
                    f"capitals); the plugin would exit at start."
                )
                break
            continue
        if not eq:
            if i >= len(words):
                result.problems.append(
                    f"-{name} needs a value and is the last word; the plugin would exit at start."
                )
                break
            value = words[i]
            i += 1
        result.values[name] = value
    if result.values.get("version") is True:
        result.problems.append("-version makes the plugin print its version and exit; remove it.")
    if result.values.get("check") is True and result.string("policy-file"):
        result.problems.append(
            "-check makes the plugin check its policy file and exit instead of serving; remove it."
        )
    plugin_name = result.string("plugin-name")
    if plugin_name is not None and plugin_name != PLUGIN_NAME:
        result.problems.append(
            f"-plugin-name {plugin_name} makes the plugin listen on {plugin_name}.sock, while the "
            f"engine dials the socket its config.json names ({PLUGIN_NAME}.sock): the plugin never starts. "
            "Remove -plugin-name (the name of the installed plugin is docker_authz_plugin_alias)."
        )
    allow_path = result.string("allowPath")
    if allow_path is not None and allow_path not in (ALLOW_PATH, "/docker/authz/allow"):
        result.problems.append(
            f"-allowPath {allow_path} asks another rule than the role's policy decides in "
            f"({ALLOW_PATH}); remove -allowPath."
        )
    return result
