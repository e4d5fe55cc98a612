# -*- coding: utf-8 -*-
"""moto in server mode for the EKS and EC2 tests.

A session fixture starts ``ThreadedMotoServer`` on 127.0.0.1 with a free port (port 0)
and stops it at the end; the tests reach it through real boto3 clients with
``endpoint_url``. Credentials are fake ones set through the environment
(AWS_ACCESS_KEY_ID=testing ...), the way boto3's normal chain reads them; the
instance-metadata lookup is disabled so nothing leaves the machine.
"""

from __future__ import absolute_import, division, print_function

import pytest

FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def no_aws_credentials(monkeypatch, tmp_path):
    """Make boto3's credential chain find nothing (and never ask the metadata service)."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SECURITY_TOKEN",
                 "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(scope="session")
def moto_endpoint():
    """URL of a moto server running in this process on 127.0.0.1 (free port)."""
    from moto.server import ThreadedMotoServer
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield "http://%s:%d" % (host, port)
    finally:
        server.stop()


@pytest.fixture
def aws_env(monkeypatch, tmp_path, moto_endpoint):
    """Fake credentials in the environment and a fresh moto state for each test."""
    no_aws_credentials(monkeypatch, tmp_path)
    for k, v in FAKE_AWS_ENV.items():
        monkeypatch.setenv(k, v)
    import requests
    requests.post(moto_endpoint + "/moto-api/reset", timeout=10)
    return moto_endpoint
