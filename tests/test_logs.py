"""The log lines of osmlulc.logs.run_logged and their parsers (osmlulc.logs, used by osmlulc.run_status): what is
written is read back, through a real log file and line by line through the log format."""

import logging

import pytest

from osmlulc import logs
from osmlulc.io import InputError
from osmlulc.run_status import failures_in_logs

WHERE = {"country": "XD", "tile": "32UNU"}


def formatted(message: str, level=logging.INFO) -> str:
    """A message as the line the rules' log handler writes."""
    record = logging.LogRecord("osmlulc", level, __file__, 1, message, None, None)
    return logging.Formatter(logs.LINE_FORMAT).format(record)


@pytest.mark.parametrize("where", [WHERE, {"country": "XD"}, {}])
def test_each_line_format_parses_back(where):
    context = logs.context_text(where)
    assert logs.parse_context(context) == where
    assert logs.parse_start(formatted(logs.start_message("snic", context))) == {"rule": "snic", "where": where}
    assert logs.is_done(formatted(logs.done_message("snic", 12.345)))
    message = "band B04.jp2: no CRS; use the original product's file: bands.resolution = 10"
    assert logs.parse_error(formatted(logs.input_error_message("snic", context, message), logging.ERROR)) == {
        "rule": "snic", "where": where, "message": message}
    assert logs.parse_error(formatted(logs.failed_message("snic", context), logging.ERROR)) == {
        "rule": "snic", "where": where, "message": None}


def test_other_lines_are_not_taken_for_them():
    for line in (formatted("snic: 3/10 (30 %), 12 s, about 28 s left"), formatted("done", logging.WARNING),
                 formatted("start snic country=XD", logging.INFO), formatted("snic (country=XD) failed")):
        assert logs.parse_error(line) is None and not logs.is_done(line) and logs.parse_start(line) is None


def test_run_logged_lines_parse_back(tmp_path):
    (tmp_path / "logs" / "snic").mkdir(parents=True)
    done, bad, broken = (tmp_path / "logs" / "snic" / f"{name}.log" for name in ("done", "bad", "broken"))
    with logs.run_logged(done, "snic", **WHERE):
        pass
    with pytest.raises(SystemExit), logs.run_logged(bad, "snic", **WHERE):
        raise InputError("the band stack has 3 bands (expected 10)")
    with pytest.raises(ZeroDivisionError), logs.run_logged(broken, "snic", **WHERE):
        1 / 0
    lines = done.read_text().splitlines()
    assert logs.parse_start(lines[0]) == {"rule": "snic", "where": WHERE} and logs.is_done(lines[-1])
    bad_lines = bad.read_text().splitlines()
    assert logs.parse_error(bad_lines[-1]) == {"rule": "snic", "where": WHERE,
                                               "message": "the band stack has 3 bands (expected 10)"}
    assert not any(map(logs.is_done, bad_lines))
    failures = {f["log"]: f for f in failures_in_logs(tmp_path / "logs")}
    assert set(failures) == {str(bad), str(broken)}
    assert failures[str(bad)]["message"] == "the band stack has 3 bands (expected 10)"
    assert failures[str(broken)]["message"] == f"failed with an error; see {broken}"
    assert all(f["status"] == "failed" and f["where"] == WHERE and f["rule"] == "snic" for f in failures.values())
