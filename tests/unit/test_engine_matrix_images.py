"""The engine matrix's image recipes (tests/images/build.py, tests/lib/dind.py): one host image
per Debian release, Debian 12's cache keys unchanged, a wrong release name refused."""

from __future__ import annotations

import json

import pytest

from tests.images import build as images
from tests.lib import dind


def test_each_release_has_its_own_keys_and_bookworm_keeps_its_own() -> None:
    keys = {s: images.base_key(s) for s in images.DIND_SUITES}
    assert len(set(keys.values())) == 3
    # Debian 12's recipe is BASE_RECIPE / DIND_RECIPE themselves: its cached images stay valid.
    assert images.base_recipe("bookworm") == images.BASE_RECIPE
    assert images.dind_recipe("bookworm") == images.DIND_RECIPE
    assert json.dumps(images.dind_recipe("trixie")["packages"]).count("docker-cli") == 1
    assert "docker-cli" not in images.dind_recipe("bullseye")["packages"]


def test_image_names_and_builders() -> None:
    assert dind.suite_image("bookworm") == "local/dind-host:latest"
    assert dind.suite_image("trixie") == "local/dind-host-trixie:latest"
    assert [dind.builder(s) for s in dind.SUITES] == ["dind-host-bullseye", "dind-host", "dind-host-trixie"]
    assert {"dind-host-bullseye", "dind-host-trixie"} <= set(images.BUILDERS)


@pytest.mark.parametrize("call", [images.base_key, images.dind_repo, dind.builder, dind.suite_image])
def test_an_unknown_release_is_refused_by_name(call) -> None:
    with pytest.raises(images.BuildError, match="unknown Debian release 'buster': use one of bullseye"):
        call("buster")
