"""The web UI: an aiohttp server over a recording (:mod:`agentsight.recording.store`) and static pages.

``server.py`` is the HTTP app (JSON API, server push, static files), ``guard.py``
what it refuses (cross-origin requests, foreign Host names, a missing token),
``timeline.py`` and ``summary.py`` shape store rows for the page, ``live.py`` wakes
the open pages when rows arrive, and ``serve.py`` runs it all, in a thread of the
``web`` sink or in the foreground for ``agentsight serve``. The page itself is plain
HTML/JS/CSS in ``static/`` with vendored libraries (``static/vendor/``): no Node at
run time. The API is documented in ``docs/web.md``.
"""

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7395
