"""`consortia datashare fetch --params-file`: query parameters kept off the command line.

Test: a JSON object of text and integers is read from a file or standard input; a float, a
boolean, a list, a non-object, broken JSON, a missing file and an oversized input are each
`invalid_argument`, and so is giving --param and --params-file together (through the console
script, before any node is asked).
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from consortia.cli.datashare_commands import PARAMS_FILE_BYTES_MAX, parameters_file
from consortia.errors import InvalidArgumentError
from tests.cli_helpers import assert_user_error, run


def test_a_json_object_of_text_and_integers_from_a_file_or_stdin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "params.json"
    path.write_text('{"firm": "firm-7", "year": 2026}')
    assert parameters_file(path) == {"firm": "firm-7", "year": 2026}
    monkeypatch.setattr("sys.stdin", io.StringIO('{"firm": "firm-8"}'))
    assert parameters_file(Path("-")) == {"firm": "firm-8"}


@pytest.mark.parametrize(
    "text",
    ['{"limit": 1.5}', '{"open": true}', '{"firms": ["a"]}', '["firm-7"]', "{firm", ""],
)
def test_anything_else_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "params.json"
    path.write_text(text)
    with pytest.raises(InvalidArgumentError):
        parameters_file(path)


def test_a_missing_or_oversized_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="does not exist"):
        parameters_file(tmp_path / "absent.json")
    big = tmp_path / "big.json"
    big.write_text('{"note": "' + "x" * PARAMS_FILE_BYTES_MAX + '"}')
    with pytest.raises(InvalidArgumentError, match="larger than"):
        parameters_file(big)


def test_param_and_params_file_together_are_one_line_refusal(tmp_path: Path) -> None:
    path = tmp_path / "params.json"
    path.write_text('{"firm": "firm-7"}')
    result = run(
        "datashare", "fetch", "--home", tmp_path, "--from", "bank-1", "--gateway",
        "http://127.0.0.1:9", "--dataset", "d", "--grant", "0", "--param", "firm=x",
        "--params-file", path,
    )  # fmt: skip
    assert_user_error(result, "invalid_argument")
