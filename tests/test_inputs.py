"""Idempotency keys: 1-200 visible ASCII characters, the same rule for the HTTP header and ``ctn trigger --key``."""

from __future__ import annotations

from pathlib import Path

import pytest

from ct_notebooks import cli
from ct_notebooks.errors import InputError
from ct_notebooks.inputs import check_idempotency_key

MESSAGE = "Idempotency-Key must be 1-200 visible ASCII characters"


@pytest.mark.parametrize("key", [None, "a", "etl-2026-12-01", "!~", "k" * 200])
def test_accepted_keys_come_back_unchanged(key: str | None) -> None:
    assert check_idempotency_key(key, field="Idempotency-Key") == key


@pytest.mark.parametrize("key", ["", "k" * 201, "has space", "tab\there", "line\n", "caf\u00e9", "\u2603", "nul\x00",
                                 "del\x7f"])
def test_refused_keys_name_the_field(key: str) -> None:
    with pytest.raises(InputError) as info:
        check_idempotency_key(key, field="Idempotency-Key")
    assert str(info.value) == MESSAGE and info.value.field == "Idempotency-Key"
    with pytest.raises(InputError) as info:
        check_idempotency_key(key, field="--key")
    assert str(info.value) == "--key must be 1-200 visible ASCII characters" and info.value.field == "--key"


def test_server_answers_a_bad_key_with_400_and_the_same_text(tmp_path: Path) -> None:
    from ct_notebooks.server.handlers import http_error
    from ct_notebooks.server.services import Services

    services = Services(tmp_path)
    calls = [
        lambda: services.start_run({"pipeline": "train"}, idempotency_key="has space", actor="alice"),
        lambda: services.signal_event("labels", {}, idempotency_key="k" * 201, actor="alice"),
    ]
    for call in calls:
        with pytest.raises(InputError) as info:
            call()
        assert http_error(info.value, services) == (400, "bad_request", MESSAGE)


def test_ctn_trigger_refuses_a_bad_key_before_reading_the_project(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["trigger", "labels", "--key", "caf\u00e9", "--project", str(tmp_path)])
    assert code == cli.EXIT_USAGE
    assert "--key must be 1-200 visible ASCII characters" in capsys.readouterr().err
