"""Logging under pressure: a full disk costs lines, never a traceback per line nor a torn line.

The file handler's writes are made to fail as a filling disk makes them fail: one line cut short
(ENOSPC after part of it), then ENOSPC outright, then space is back.
"""

from __future__ import annotations

import errno
import logging
import os
import re
from pathlib import Path
from typing import Any

import pytest

from srv import log as srvlog

LINE = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\]\[\w+\]\[\w+\]\[\d+\]\[[\w-]+\] .+$")


@pytest.fixture
def file_logger(tmp_path: Path) -> Any:
    handler = srvlog.AppendFileHandler(str(tmp_path / "srs.log"))
    handler.setFormatter(srvlog.LineFormatter())
    logger = logging.getLogger("test.pressure")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield logger, handler, tmp_path / "srs.log"
    logger.removeHandler(handler)
    handler.close()


class FillingDisk:
    """os.write for one fd as a disk that fills up: `room` more bytes fit, then ENOSPC."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.room: int | None = None  # None: plenty of space
        self.real = os.write

    def __call__(self, fd: int, data: bytes) -> int:
        if fd != self.fd or self.room is None:
            return self.real(fd, data)
        if self.room == 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = self.real(fd, bytes(data[:self.room]))
        self.room -= n
        return n


def test_full_disk_drops_lines_quietly_then_says_how_many(file_logger: Any, capsys: Any,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    logger, handler, path = file_logger
    disk = FillingDisk(handler.fd)
    monkeypatch.setattr(srvlog.os, "write", disk)
    logger.warning("before the disk filled")
    disk.room = 20  # the next line is cut short after 20 bytes ...
    for i in range(7):  # ... and then nothing fits
        logger.warning("lost line %d", i)
    disk.room = None  # space is back
    logger.warning("after the disk had room again")
    logger.warning("and one more")

    lines = path.read_text().splitlines()
    assert len(lines) == 4, lines
    assert all(LINE.match(line) for line in lines), lines  # no torn line
    assert lines[0].endswith("before the disk filled")
    assert lines[1].endswith(" 7 log lines dropped: short write (disk full?)"), lines[1]
    assert lines[2].endswith("after the disk had room again")
    assert "lost line" not in path.read_text()
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.count("\n") == 1 and "dropping log lines until it can be written again" in err


def test_a_lasting_failure_costs_one_notice_and_lines_are_counted_from_the_start(
        file_logger: Any, capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    logger, handler, path = file_logger
    disk = FillingDisk(handler.fd)
    monkeypatch.setattr(srvlog.os, "write", disk)
    disk.room = 0
    for i in range(1000):
        logger.error("lost line %d", i)
    disk.room = None
    logger.warning("back")
    lines = path.read_text().splitlines()
    assert [line.split("] ", 1)[1] for line in lines] == [
        "1000 log lines dropped: No space left on device", "back"]
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1
