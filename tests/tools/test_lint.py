"""tools/lint.py: the static checks CI runs, their command lines, and how a failure is reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools import lint


def test_the_checks_and_their_order() -> None:
    table = lint.checks()
    assert list(table) == ["ruff-check", "ruff-format", "mypy", "import-linter"]
    assert table["ruff-format"] == ["ruff", "format", "--check", "."]
    assert table["import-linter"][0] == "lint-imports"


def test_mypy_checks_every_distribution_and_the_typing_test_once_it_exists(tmp_path: Path) -> None:
    for dist in ("mp-sync", "mp-core"):
        (tmp_path / "packages" / dist / "src").mkdir(parents=True)
    assert lint.mypy_targets(tmp_path) == ["packages/mp-core/src", "packages/mp-sync/src"]
    (tmp_path / "tests" / "typing").mkdir(parents=True)
    assert lint.mypy_targets(tmp_path) == ["packages/mp-core/src", "packages/mp-sync/src", "tests/typing"]


def test_list_prints_name_tab_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert lint.main(["--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == list(lint.checks())
    assert "ruff-format\truff format --check ." in lines


def test_an_unknown_check_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        lint.main(["mypy", "pylint"])
    assert excinfo.value.code == 2
    assert "unknown check pylint (known: ruff-check, ruff-format, mypy, import-linter)" in capsys.readouterr().err


def test_a_failing_or_missing_tool_fails_the_run_and_the_summary_says_which(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    failing = tmp_path / "fails"
    failing.write_text("#!/bin/sh\necho 'one finding'\nexit 3\n")
    failing.chmod(0o755)
    monkeypatch.setattr(
        lint,
        "checks",
        lambda root=lint.REPO_ROOT: {"good": ["true"], "bad": [str(failing)], "absent": ["no-such-tool"]},
    )
    assert lint.main([]) == 1
    out, err = capfd.readouterr()  # the tools write to the file descriptors
    assert "one finding" in out
    assert "no-such-tool is not installed" in err
    summary = out.split("--- summary\n", 1)[1].splitlines()
    assert [line.split()[:2] for line in summary] == [["good", "passed"], ["bad", "FAILED"], ["absent", "FAILED"]]
    assert "exit status 3" in summary[1] and "exit status 127" in summary[2]
    assert lint.main(["good"]) == 0
