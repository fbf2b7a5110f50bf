"""The private engine gets the test image under its own name, whatever other names it has."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.conftest import TEST_IMAGE
from tests.private_dockerd import PrivateDockerd

pytestmark = pytest.mark.docker


def test_load_test_image_keeps_its_name_when_the_image_has_another_tag(docker_client: Any) -> None:
    """As after the README's ``docker tag rtest/busybox busybox``: the other name sorts first
    among the image's tags, which ``save(named=True)`` would have exported instead."""
    extra = f"busybox-rtest-{uuid.uuid4().hex[:8]}:latest"
    assert extra < TEST_IMAGE  # the first of the image's tags
    dockerd = PrivateDockerd()
    try:
        dockerd.start()
        docker_client.images.get(TEST_IMAGE).tag(extra)
        try:
            assert docker_client.images.get(TEST_IMAGE).tags[0] == extra
            dockerd.load_test_image()
        finally:
            docker_client.images.remove(extra)  # untag only: the image stays
        assert extra not in docker_client.images.get(TEST_IMAGE).tags
        client = dockerd.client()
        try:
            assert TEST_IMAGE in client.images.get(TEST_IMAGE).tags
            output = client.containers.run(
                TEST_IMAGE, ["echo", "ok"], network_mode="host", remove=True
            )
            assert output.strip() == b"ok"
        finally:
            client.close()
    finally:
        dockerd.close()
