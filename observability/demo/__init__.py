"""Demo traffic and first-run set-up: the simulator of three hand-off bots and bootstrap.

May import anything in the package; nothing imports it but the command-line shims
`observability.simulate` and `observability.bootstrap`.
"""
