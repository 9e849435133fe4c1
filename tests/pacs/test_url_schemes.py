"""The PACS commands send to URLs the user configures; urllib would also open ``file:`` and other schemes, so only
http(s) is taken (the security linter's S310 is justified by these checks)."""

from __future__ import annotations

import logging

import pytest

from cxrtriage.cli.main import main as cli
from cxrtriage.pacs.delivery import post_fhir
from cxrtriage.pacs.orthanc import OrthancClient, OrthancError


def test_orthanc_pull_refuses_a_url_that_is_not_http(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli(["orthanc-pull", "--url", "file:///etc/passwd", "--once"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "must be an http:// or https:// URL with a host (scheme 'file')" in err and "/etc/passwd" not in err


def test_a_url_with_a_password_is_not_echoed_when_refused(capsys):
    with pytest.raises(SystemExit):
        cli(["dicom-node", "--fhir-endpoint", "ftp://user:s3cret@ehr.example/fhir"])
    err = capsys.readouterr().err
    assert "scheme 'ftp'" in err and "s3cret" not in err


def test_the_orthanc_client_refuses_other_schemes():
    with pytest.raises(OrthancError, match="http:// or https://"):
        OrthancClient("file:///etc")
    assert OrthancClient("https://pacs.example:8042/").url == "https://pacs.example:8042"


def test_a_fhir_endpoint_that_is_not_http_gets_nothing(tmp_path, caplog):
    target = tmp_path / "DiagnosticReport"
    with caplog.at_level(logging.ERROR):
        assert post_fhir({"resourceType": "DiagnosticReport"}, tmp_path.as_uri()) is False
    assert not target.exists() and "not an http:// or https:// URL" in caplog.text
