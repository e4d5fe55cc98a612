# -*- coding: utf-8 -*-
"""Fixtures for the provider tests: import path, moto server, fakes (see tests/fakes)."""

from __future__ import absolute_import, division, print_function

import os
import sys

_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", ".."))
_COLLECTIONS = os.path.join(_ROOT, "collections")
if _COLLECTIONS not in sys.path:
    sys.path.insert(0, _COLLECTIONS)

import pytest  # noqa: E402

from ansible_collections.meshfleet.mesh.tests.fakes.aws import (  # noqa: E402,F401 pylint: disable=unused-import
    aws_env, eks_rules, moto_endpoint)


@pytest.fixture
def state_dir(tmp_path):
    d = tmp_path / "state"
    d.mkdir()
    return str(d)
