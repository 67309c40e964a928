"""``mviz serve``: prepare a study when needed, make sure a researcher password exists,
and start the Streamlit app."""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
import sys
from pathlib import Path

from studies import paths
from studies.bundles import list_items
from studies.definition import load_study
from studies.errors import StudyInputError

logger = logging.getLogger(__name__)

PASSWORD_VARIABLE = "MVIZ_RESEARCHER_PASSWORD"


def password_file() -> Path:
    return paths.data_dir() / "researcher_password"


def ensure_researcher_password() -> tuple[str, str]:
    """Return ``(password, where it comes from)``, generating one on the first run.

    The password comes from ``MVIZ_RESEARCHER_PASSWORD`` when set, otherwise from the
    git-ignored file ``<data>/researcher_password``, which is created with a random
    password when missing. Streamlit secrets (``researcher_password``) take precedence
    inside the app.
    """
    if os.environ.get(PASSWORD_VARIABLE):
        return os.environ[PASSWORD_VARIABLE], f"the {PASSWORD_VARIABLE} environment variable"
    path = password_file()
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(12) + "\n")
        path.chmod(0o600)
    return path.read_text().strip(), str(path)


def command_serve(study_file: str, *, port: int, address: str) -> int:
    """Prepare the study's bundles when missing and run the app in the foreground."""
    definition = load_study(study_file)
    try:
        list_items(definition.name)
    except StudyInputError:
        from studies.prepare import command_prepare

        print(f"Preparing the bundles of study {definition.name!r} (first run only).")
        command_prepare(study_file)

    password, source = ensure_researcher_password()
    base = f"http://{address}:{port}/"
    print(f"\nParticipant link:  {base}?study={definition.name}")
    print(f"  (with a panel id: {base}?study={definition.name}&PROLIFIC_PID=<id>)")
    print(f"Researcher area:   {base}?researcher=1  password: {password}  (from {source})\n")

    app = paths.REPOSITORY_ROOT / "app" / "main.py"
    command = [sys.executable, "-m", "streamlit", "run", str(app),
               "--server.port", str(port), "--server.address", address,
               "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    # The app finds study files by name in MVIZ_STUDIES_DIR: serve the folder of this file.
    environment = {**os.environ, "MVIZ_STUDIES_DIR": str(Path(study_file).resolve().parent)}
    return subprocess.call(command, cwd=paths.REPOSITORY_ROOT, env=environment)
