"""Finding what a test's temporary directory holds, including anonymous files this process has open."""

import os
from pathlib import Path


def temporary_files(directory: Path) -> list[Path]:
    """Every file in ``directory``: those with a name, and anonymous ones this process holds open."""
    found = [path for path in directory.rglob("*") if path.is_file()]
    for descriptor in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{descriptor}")
        except OSError:
            continue
        if target.startswith(f"{directory}/"):
            found.append(Path(f"/proc/self/fd/{descriptor}"))
    return found
