"""promptory's benchmarks: each figure against a baseline measured in the same run.

Run them all with ``python -m benchmarks`` (``make bench``), or some groups by name
(``python -m benchmarks hot render``; ``--load wrk|python`` picks the server figures' load
process, by default wrk when installed). Every figure is the median of repeated runs, printed
with its baseline's median and their ratio, and checked against the target the project set
on that ratio; the same goes to ``benchmarks/results.json`` (``--json PATH``). A missed
target is reported, not an error: the command exits 0.

Groups (one module each): ``hot`` (`client_hot`), ``render``, ``cold`` (`cold_fetch`),
``stale``, ``threads``, ``server`` (`server_load`), ``index``, ``memory``. `measure` holds
the timing rules every group follows. Not part of the test run.
"""
