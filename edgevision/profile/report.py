"""The profile's results: measurements, the machine they ran on, and their JSON form."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgevision.errors import EdgeVisionError
from edgevision.fileio import atomic_write_text
from edgevision.profile.stats import LatencyStats, summarize

REPORT_SCHEMA = "edgevision.profile/1"


@dataclass
class Measurement:
    """Latency samples of one thing timed: an artifact at one batch size, a stage, a pipeline.

    ``kind`` is ``model`` (an artifact on a backend), ``stage`` (preprocess, postprocess,
    capture, …) or ``pipeline`` (capture-to-result latency, frame age). A measurement that could
    not run here has ``skipped`` set to the reason and no samples.
    """

    key: str
    kind: str
    batch: int = 1
    samples_ms: list[float] = field(default_factory=list)
    artifact: str | None = None
    backend: str | None = None
    precision: str | None = None
    target: str | None = None
    note: str = ""
    skipped: str | None = None
    stats: LatencyStats | None = None

    def __post_init__(self) -> None:
        if self.stats is None and self.samples_ms and not self.skipped:
            self.stats = summarize(self.samples_ms, self.batch)

    @property
    def ran(self) -> bool:
        """Whether it was measured (not skipped)."""
        return self.skipped is None and self.stats is not None

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "stats"}
        d["stats"] = self.stats.to_dict() if self.stats else None
        d["samples_ms"] = [round(s, 6) for s in self.samples_ms]
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measurement:
        kwargs = {k: data.get(k) for k in cls.__dataclass_fields__ if k in data}
        kwargs["stats"] = LatencyStats.from_dict(data["stats"]) if data.get("stats") else None
        kwargs["samples_ms"] = list(data.get("samples_ms") or [])
        kwargs["note"] = data.get("note") or ""
        return cls(**kwargs)


@dataclass
class ProfileReport:
    """A profile run: what was measured, on which machine, with which settings.

    ``deployed`` is the key of the measurement a budget gates by default: the artifact the
    runtime would pick on this machine (model mode) or the capture-to-result latency (pipeline).
    """

    mode: str
    bundle: dict[str, Any]
    machine: dict[str, Any]
    settings: dict[str, Any]
    measurements: list[Measurement]
    deployed: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    created_at: str = field(
        default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds")
    )

    def find(self, key: str, batch: int | None = None) -> list[Measurement]:
        """Measurements with ``key`` (optionally at ``batch``), in report order."""
        return [m for m in self.measurements if m.key == key and batch in (None, m.batch)]

    def keys(self) -> list[str]:
        """Distinct measurement keys, in report order."""
        return list(dict.fromkeys(m.key for m in self.measurements))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (samples included, so a plot or a comparison can be redone)."""
        return {
            "schema": REPORT_SCHEMA,
            "mode": self.mode,
            "created_at": self.created_at,
            "bundle": self.bundle,
            "machine": self.machine,
            "settings": self.settings,
            "deployed": self.deployed,
            "counts": self.counts,
            "measurements": [m.to_dict() for m in self.measurements],
        }

    def to_json(self) -> str:
        """The report as indented JSON text."""
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the JSON report atomically."""
        return atomic_write_text(path, self.to_json())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProfileReport:
        """Rebuild a report from its JSON form."""
        if not isinstance(data, dict) or data.get("schema") != REPORT_SCHEMA:
            found = data.get("schema") if isinstance(data, dict) else type(data).__name__
            raise EdgeVisionError(
                f"not an edgevision profile report (schema {found!r}, expected {REPORT_SCHEMA!r})",
                "pass a file written by `edgevision profile --json`",
            )
        kind = PipelineProfile if data.get("mode") == "pipeline" else ProfileReport
        return kind(
            mode=data["mode"],
            bundle=data.get("bundle") or {},
            machine=data.get("machine") or {},
            settings=data.get("settings") or {},
            measurements=[Measurement.from_dict(m) for m in data.get("measurements", [])],
            deployed=data.get("deployed"),
            counts=data.get("counts") or {},
            created_at=data.get("created_at", ""),
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ProfileReport:
        """Read a JSON report; a missing or malformed file is an `EdgeVisionError`."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise EdgeVisionError(
                f"profile report {path} does not exist",
                "write one with `edgevision profile BUNDLE --json FILE`",
            ) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise EdgeVisionError(f"profile report {path} is not valid JSON: {exc}") from None
        try:
            return cls.from_dict(data)
        except (KeyError, TypeError) as exc:
            raise EdgeVisionError(
                f"profile report {path} is malformed ({exc})", "regenerate it"
            ) from None


@dataclass
class PipelineProfile(ProfileReport):
    """A pipeline-mode report: capture-to-result latency, frame age, stages and frame counts."""

    @property
    def latency(self) -> Measurement:
        """Capture-to-result latency per processed frame."""
        return self.find("capture_to_result")[0]

    @property
    def frame_age(self) -> Measurement:
        """How old each frame was when inference started on it."""
        return self.find("frame_age")[0]

    @property
    def dropped(self) -> int:
        """Frames the source delivered that were never processed (newest-frame policy)."""
        return int(self.counts.get("dropped", 0))
