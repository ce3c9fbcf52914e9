"""The promptory server: prompts served straight from a git repository.

Needs the ``server`` extra (from a clone: ``pip install ".[server]"``; see the README's
"Install"). The modules:

* `files`: prompt files (Markdown with YAML front matter), parsed and validated;
* `history`: which commit last changed a file;
* `records`: one prompt file of a snapshot, with its JSON and ETag made once;
* `store`: the git-native store: snapshots of commits, lookups, polling;
* `render`: server-side rendering with includes;
* `keys`: API keys, hashed at rest;
* `ratelimit`: per-key token buckets;
* `openapi`: the OpenAPI document;
* `app`: `create_app(ServerSettings(...))`, the Starlette app;
* `runner`: `BackgroundServer`, uvicorn in a thread (tests, demos, benchmarks).

Nothing is imported here, so each module costs only what it uses.
"""
