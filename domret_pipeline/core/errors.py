"""Input errors that name the file and line at fault."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class RowIssue:
    """One bad input row: where it is and what is wrong with it."""

    file: str
    line: int  # 1-based line number; 0 when the problem concerns the whole file
    reason: str
    row_id: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        ident = f" (id {self.row_id!r})" if self.row_id is not None else ""
        return f"{where}{ident}: {self.reason}"

    def as_dict(self) -> dict:
        return asdict(self)


class InputDataError(ValueError):
    """Raised when input data is invalid and the user did not opt into quarantine."""

    def __init__(self, issues: list[RowIssue] | RowIssue, hint: str | None = None):
        self.issues = [issues] if isinstance(issues, RowIssue) else list(issues)
        shown = "\n".join(f"  - {issue}" for issue in self.issues[:20])
        more = f"\n  ... and {len(self.issues) - 20} more" if len(self.issues) > 20 else ""
        tail = f"\n{hint}" if hint else ""
        super().__init__(f"{len(self.issues)} invalid input row(s):\n{shown}{more}{tail}")


QUARANTINE_HINT = (
    "Fix the rows above, or set on_bad_rows='quarantine' to set them aside; quarantined rows "
    "are counted and listed in the asset metadata."
)
