"""module_utils/opa_args.py: opa-args read as the plugin's Go flag package reads them.

The expected values of the first table were checked against Go's own flag package (a FlagSet
with opa-docker-authz v0.10's flags, Go 1.2x) for the same words.
"""

from __future__ import annotations

import pytest

from module_utils.opa_args import engine_args, flags_of, parse, release_of

V10 = flags_of("ghcr.io/open-policy-agent/opa-docker-authz:v0.10-linux-amd64")


@pytest.mark.parametrize(
    ("args", "policy_file", "exits"),
    [
        ("-policy-file /opa/policies/authz.rego", "/opa/policies/authz.rego", False),
        ("-skip-ping false -policy-file /opa/p.rego", None, False),  # stops at 'false'
        ("-policy-file /a -policy-file=/b --quiet", "/b", False),  # the last one wins
        ("-policy-file /a -no-such-flag", "/a", True),
        ("-policy-file", None, True),
        ("-policy-file -quiet", "-quiet", False),  # a string flag takes the next word, whatever it is
        ("--policy-file=/x -- -quiet", "/x", False),
        ("-policy-file /x - -quiet", "/x", False),  # a lone '-' is not a flag
        ("---policy-file /x", None, True),
        ("-=x", None, True),
        ("-quiet=T -skip-ping=0 -policy-file /x", "/x", False),
        ("-quiet= -policy-file /x", None, True),
        ("-h", None, True),
        ("-help -policy-file /x", None, True),
        ("-policy-file /x extra -quiet", "/x", False),
        ("-policy-file=/x=y", "/x=y", False),
    ],
)
def test_words_are_read_as_go_reads_them(args: str, policy_file: str | None, exits: bool) -> None:
    read = parse(args, V10, "v0.10")
    assert read.string("policy-file") == policy_file, read
    exit_problems = [p for p in read.problems if "would exit" in p or "usage and exit" in p]
    assert bool(exit_problems) == exits, read.problems


def test_what_go_ignores_is_named_with_the_fix() -> None:
    read = parse("-skip-ping false -policy-file /opa/p.rego", V10)
    assert read.values == {"skip-ping": True}
    assert len(read.problems) == 1 and "ignores 'false -policy-file /opa/p.rego'" in read.problems[0]
    assert "write -skip-ping=false" in read.problems[0]
    assert "ignores '-quiet'" in parse("--policy-file=/x -- -quiet", V10).problems[0]
    assert parse("-policy-file /x --", V10).problems == []  # nothing after the terminator


def test_booleans() -> None:
    read = parse("-quiet=T -skip-ping=0 -log-only-denied -log-only-denied=false", V10)
    assert read.values == {"quiet": True, "skip-ping": False, "log-only-denied": False}
    assert "not a boolean" in parse("-quiet=yes", V10).problems[0]


@pytest.mark.parametrize(
    ("image", "release"),
    [
        ("ghcr.io/open-policy-agent/opa-docker-authz:v0.10-linux-{arch}", (0, 10)),
        ("openpolicyagent/opa-docker-authz-v2:0.4", (0, 4)),
        ("mirror.example:5000/authz:0.2.2", (0, 2)),
        ("registry.example/opa-docker-authz:edge", None),
        ("registry.example/opa-docker-authz", None),
        ("registry.example:5000/opa-docker-authz@sha256:" + "0" * 64, None),
    ],
)
def test_the_release_an_image_tag_names(image: str, release: tuple[int, int] | None) -> None:
    assert release_of(image) == release


def test_flags_by_release() -> None:
    assert {
        "plugin-name", "allowPath", "config-file", "policy-file", "skip-ping", "version", "check", "quiet",
        "log-only-denied",
    } == V10  # fmt: skip
    v08 = flags_of("openpolicyagent/opa-docker-authz-v2:0.8")
    assert v08 is not None and "config-file" in v08 and "log-only-denied" not in v08
    v04 = flags_of("openpolicyagent/opa-docker-authz-v2:0.4")
    assert v04 == {"plugin-name", "allowPath", "policy-file", "version", "check"}
    assert flags_of("x:edge") is None and flags_of("x:v0.11") is None
    # 0.1 (a plugin of Docker's legacy kind, with other flags) and tags that only look like a
    # version (a mirror's v0.0-test) are not judged
    assert flags_of("x:0.1.6") is None and flags_of("x:v0.0-does-not-exist-linux-amd64") is None


def test_flags_a_release_lacks_are_refused_with_the_release_that_has_them() -> None:
    v08 = flags_of("x:0.8")
    read = parse("-policy-file /x -log-only-denied", v08, "0.8")
    assert read.problems == [
        "opa-docker-authz 0.8 has no flag -log-only-denied (it came in 0.9); the plugin would exit at start. "
        "Remove it, or use a newer plugin image."
    ]
    unknown = parse("-policy-file /x -typo", V10, "v0.10").problems[0]
    assert unknown.startswith("opa-docker-authz v0.10 has no flag -typo;") and "-log-only-denied" in unknown


def test_a_release_the_tag_does_not_name_keeps_flags_unknown_here() -> None:
    read = parse("-new-bool -new-str value -policy-file /x -other=1", None)
    assert read.problems == []
    assert read.values == {"new-bool": True, "new-str": "value", "policy-file": "/x", "other": "1"}


@pytest.mark.parametrize(
    ("args", "text"),
    [
        ("-policy-file /x -plugin-name authz", "listen on authz.sock"),
        ("-policy-file /x -allowPath data.docker.authz.deny", "remove -allowPath"),
        ("-policy-file /x -version", "print its version and exit"),
        ("-policy-file /x -check", "check its policy file and exit"),
    ],
)
def test_settings_that_stop_the_plugin_or_change_its_question(args: str, text: str) -> None:
    problems = parse(args, V10).problems
    assert len(problems) == 1 and text in problems[0], problems


def test_settings_the_plugin_reads_as_the_defaults_pass() -> None:
    assert (
        parse(
            "-policy-file /x -plugin-name opa-docker-authz -allowPath data.docker.authz.allow", V10
        ).problems
        == []
    )
    assert (
        parse("-config-file /c -allowPath /docker/authz/allow -check", V10).problems == []
    )  # -check needs a file


def test_engine_args_keep_the_empty_words_the_plugin_stops_at() -> None:
    # moby splits opa-args=VALUE on single spaces: a leading or double space is an empty word
    assert engine_args(["", "-policy-file", "/x"]) == ["", "-policy-file", "/x"]
    assert parse(engine_args(["", "-policy-file", "/x"])).values == {}
    assert engine_args(["-quiet", "", "-policy-file", "/x"]) == ["-quiet", "", "-policy-file", "/x"]
    # at the end it changes nothing (an emptied setting is [""])
    assert engine_args(["-policy-file", "/x", "", ""]) == ["-policy-file", "/x"]
    assert engine_args([""]) == [] and engine_args(None) == []
