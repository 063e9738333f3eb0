"""aslfr-compare: what it refuses in one line (the comparisons themselves are tested on
real runs in test_train.py, test_export.py and test_sweeps.py)."""

from __future__ import annotations

import pytest

from aslfr.experiments import compare


def test_online_comparison_when_not_logged_in_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    netrc = tmp_path / "netrc"
    netrc.write_text("")
    monkeypatch.setenv("NETRC", str(netrc))
    with pytest.raises(SystemExit) as stop:
        compare.main(["--wandb-path", "me/aslfr", "--no-wandb"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not logged in" in err and "wandb login" in err


def test_a_directory_without_runs_is_one_line(tmp_path, capsys):
    for args in ([str(tmp_path / "missing")], [str(tmp_path)]):
        with pytest.raises(SystemExit) as stop:
            compare.main([*args, "--no-wandb"])
        assert stop.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, err
