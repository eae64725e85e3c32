"""Where the Go QueueRequest vectors are (copied into the repository from shared/compat)."""

from __future__ import annotations

from pathlib import Path

COMPAT = Path(__file__).resolve().parents[1] / "compat"
ORIGINALS = Path(__file__).resolve().parents[3] / "shared" / "compat"
