"""The handler layer: one module per action (or small group), between the runner and ``ml/``.

Each action's entry point is still ``handler(params: dict, ctx: JobContext) -> dict`` at the runner's
boundary (``jobs.ACTIONS`` names it). Inside, in this order and nowhere else:

1. the wire ``params`` are parsed **once** into a typed, frozen request (``parse_*``), each problem a
   :class:`~statsbot_nb.errors.JobError` sentence that names the parameter and says what it must be;
2. the file policy (:mod:`statsbot_nb.paths`) is applied to every path, and files are opened and read;
3. ``ml/`` is called with data frames and typed options and a plain progress callable — it never sees the
   wire dict, the policy or the :class:`~statsbot_nb.context.JobContext`;
4. the result is shaped into the success ``data`` of PROTOCOL.md.

Importing this package is cheap: each module imports pandas and friends only through ``ml/``.
"""
