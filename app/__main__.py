"""`python -m app [Streamlit flags]`: start the dashboard server (what `make run` does).

It starts compiling (or loading) the Numba kernels as the server starts, not when its first visitor arrives,
starts the alert worker (saved screens on new versions, webhooks: engine/server/alert_worker.py), logs which
identities the dashboard trusts, then hands over to Streamlit with `app/main.py` as the script (a bare
`streamlit run app/main.py` serves the pages without the worker: alerts then wait for a server that runs one).
"""

import sys
from pathlib import Path

from streamlit.web import cli

from app.identity import log_identity_sources
from engine.server import alert_worker, settings
from engine.warmup import warm_up_in_background

try:
    settings.check()
except settings.SettingsError as exc:  # fail closed: the dashboard does not start with unusable settings
    sys.exit(str(exc))
warm_up_in_background()
alert_worker.start()  # saved screens run on each family's new versions, webhooks are sent, in this process
log_identity_sources()
sys.argv = ["streamlit", "run", str(Path(__file__).with_name("main.py")), *sys.argv[1:]]
sys.exit(cli.main())
