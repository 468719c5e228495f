"""The session's results: an append-only JSON-lines file, rewritten atomically once per record.

Each record is one line. `append` writes the old bytes plus the new line to a temporary file beside
the results, fsyncs it and renames it over the old one (POSIX rename is atomic), so a kill or a power
loss at any instant leaves either the file before or the file after the record - never half a line.
(mqe.files.atomic_write_bytes, the project's one atomic writer, torch-free.) A line that does not parse was damaged outside this tool: loading stops
with the file and line, and nothing is rewritten.

Records ("record" field):
  session     protocol path and sha256; the first line
  started     a run began (run_id); a run with "started" and no "run" is half-finished
  run         a finished run: task, trial, method, blinded label, points, recording, fingerprint, ...
  abandoned   a half-finished run found on resume; it is redone, the record says so
  preference  A/B mode: which of the two runs of a trial the evaluator preferred
"""

from __future__ import annotations

import json
from pathlib import Path

from mqe.files import atomic_write_bytes

RECORD_KINDS = ("session", "started", "run", "abandoned", "preference")


class ResultsError(ValueError):
    """A results file that cannot be read or does not belong to the protocol; names file and line."""


def read_records(path: str | Path) -> list[dict]:
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    records = []
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    elif lines:
        raise ResultsError(f"{path}:{len(lines)}: truncated results line (no end of line); the file was cut outside mqe-eval")
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ResultsError(f"{path}:{number}: corrupt results line ({error.msg if hasattr(error, 'msg') else error})") from None
        if not isinstance(record, dict) or record.get("record") not in RECORD_KINDS:
            raise ResultsError(f"{path}:{number}: not a results record (expected an object with record in {list(RECORD_KINDS)})")
        record["_line"] = number
        records.append(record)
    return records


class ResultsFile:
    """Append-only results of one session."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.records = read_records(self.path)

    def append(self, record: dict) -> dict:
        if record.get("record") not in RECORD_KINDS:
            raise ValueError(f"record kind {record.get('record')!r}, expected one of {RECORD_KINDS}")
        line = json.dumps(record, sort_keys=True, allow_nan=False).encode() + b"\n"
        old = self.path.read_bytes() if self.path.exists() else b""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.path, lambda handle: handle.write(old + line))
        self.records.append(dict(record, _line=len(self.records) + 1))
        return record

    def of(self, kind: str) -> list[dict]:
        return [r for r in self.records if r["record"] == kind]

    def finished_runs(self) -> dict[str, dict]:
        return {r["run_id"]: r for r in self.of("run")}

    def half_finished(self) -> list[str]:
        """Runs started but neither finished nor already marked abandoned since their last start."""
        open_runs: dict[str, bool] = {}
        for record in self.records:
            if record["record"] == "started":
                open_runs[record["run_id"]] = True
            elif record["record"] in ("run", "abandoned"):
                open_runs[record["run_id"]] = False
        return [run_id for run_id, is_open in open_runs.items() if is_open]
