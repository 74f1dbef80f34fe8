"""The web dashboard: the built React app and the control API over HTTP (docs/web.md).

- ``auth.py``: the bearer token file, Host and Origin checks (pure).
- ``httpserve.py``: HTTP/1.1 over trio with h11 (requests, chunked responses).
- ``server.py``: :class:`WebServer`: static files, ``/api/rpc`` on the one route
  table, server-sent events, job downloads, dataset uploads.
- ``static/``: the built dashboard (from ``web/`` by ``make web``; not checked in).
"""
