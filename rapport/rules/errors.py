"""The syntax error of the rule language, pointing at line and column with a caret."""

from __future__ import annotations

from rapport.errors import ValidationError


class RuleSyntaxError(ValidationError):
    """Rule text that does not parse; ``line`` and ``col`` are 1-based, ``problem`` is the bare reason."""

    code = "rule_syntax"

    def __init__(self, problem: str, text: str, offset: int) -> None:
        before = text[:offset]
        line = before.count("\n") + 1
        col = offset - (before.rfind("\n") + 1) + 1
        source = text.split("\n")[line - 1].replace("\t", " ")
        gutter = " " * len(str(line))
        message = f"line {line}, col {col}: {problem}\n  {line} | {source}\n  {gutter} | {' ' * (col - 1)}^"
        super().__init__(message, details=[{"line": line, "col": col, "problem": problem}])
        self.problem = problem
        self.line = line
        self.col = col
