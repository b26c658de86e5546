"""src/ looks nothing up by name on the project's own objects: no getattr()/hasattr()
(the project's rule; a typed table or a Protocol says what is there instead)."""

from __future__ import annotations

import re

from tests.conftest import REPO

# A call of the builtins; a module's PEP 562 `def __getattr__(` hook does not match.
_DUCK = re.compile(r"(?<![\w.])(getattr|hasattr)\(")


def test_src_has_no_getattr_or_hasattr() -> None:
    found = [
        f"{path.relative_to(REPO)}:{n}: {line.strip()}"
        for path in sorted((REPO / "src").rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if _DUCK.search(line)
    ]
    assert found == []
