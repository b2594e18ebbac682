"""Get a store ready: `python -m observability.bootstrap [--demo]`.

`make run` calls this before it starts the worker, the simulator and the console. It runs the
steps of `STEPS` in order and prints what each one did:

    migrate      create or upgrade the schema of DATABASE_URL
    alert_rules  seed the default alert rules once (observability.alerting.rules)
    admin_user   with no user yet, create `admin` and print its password once (observability.auth.cli)
    ingest_token with no OTLP_INGEST_TOKEN set, create the worker's OTLP ingest token once in a 0600
                 file (OTLP_INGEST_TOKEN_FILE) and print how bots and collectors send it
    demo_data    with --demo only: backfill 24 hours of demo traffic when the store has no LLM
                 calls yet (a store that already holds data is left alone)

Registering a step (the one registration point, like `worker.STEPS`): add
`BootstrapStep("name", function)` to `STEPS` after `migrate` and before `demo_data`. The function
takes a `BootstrapContext` and returns a one-line summary of what it did (or None). Steps run on
every `make run`, so they must be idempotent: seed what is missing, never overwrite what an
operator changed. `lazy("observability.module:function")` imports the module only when the step
runs, so bootstrap itself stays cheap to import. A failing step is reported and the others still
run (except `required` ones, which stop bootstrap); the exit code is 1 if any step failed.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa

from observability.settings import Settings, get_settings
from observability.store import Store, schema

log = logging.getLogger("observability.bootstrap")

DEMO_HOURS = 24.0


@dataclass
class BootstrapContext:
    store: Store
    settings: Settings
    demo: bool = False  # --demo was given
    demo_hours: float = DEMO_HOURS
    seed: int | None = None  # demo seed (None: the simulator's default)
    echo: Callable[[str], None] = print  # progress lines of long steps
    state: dict = field(default_factory=dict)  # what steps want to tell later steps


@dataclass(frozen=True)
class BootstrapStep:
    name: str
    run: Callable[[BootstrapContext], str | None]
    demo_only: bool = False  # only with --demo
    required: bool = False  # a failure stops bootstrap (later steps need it)


def lazy(target: str) -> Callable[[BootstrapContext], str | None]:
    """A step function given as "package.module:function", imported when the step runs."""
    module_name, _, func_name = target.partition(":")

    def run(ctx: BootstrapContext) -> str | None:
        return getattr(importlib.import_module(module_name), func_name)(ctx)

    run.__name__ = func_name
    return run


# ---- built-in steps ---------------------------------------------------------------------------


def step_migrate(ctx: BootstrapContext) -> str:
    ctx.store.migrate()
    with ctx.store.connect() as conn:
        revision = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    return f"schema at revision {revision}"


def step_ingest_token(ctx: BootstrapContext) -> str:
    """Make sure `/v1/traces` is never open: create the ingest token the worker reads, once."""
    from observability.worker.ingest_token import ensure_ingest_token

    if ctx.settings.otlp_ingest_token:
        return "OTLP_INGEST_TOKEN is set; nothing to do"
    path = ctx.settings.otlp_ingest_token_file
    token, created = ensure_ingest_token(ctx.settings)
    if not created:
        return f"kept in {path}"
    ctx.echo(f"  ingest_token: created the worker's OTLP ingest token in {path} (0600):")
    ctx.echo(f'      OTEL_EXPORTER_OTLP_HEADERS="Authorization=Bearer {token}"')
    ctx.echo("    set that in the environment of bots and collectors that export spans to the worker")
    return f"created (kept in {path})"


def step_demo_data(ctx: BootstrapContext) -> str:
    """Backfill demo traffic into a store that has no LLM calls yet."""
    with ctx.store.connect() as conn:
        existing = conn.execute(sa.select(sa.func.count()).select_from(schema.llm_calls)).scalar() or 0
    if existing:
        return f"skipped: the store already holds {existing:,} LLM calls"
    from observability.demo import simulate

    ctx.echo(f"  demo_data: backfilling {ctx.demo_hours:g} h of demo traffic (takes a few seconds)...")
    seed = simulate.DEFAULT_SEED if ctx.seed is None else ctx.seed
    result = simulate.backfill(ctx.store, ctx.demo_hours, seed=seed, settings=ctx.settings, progress=ctx.echo)
    if result.rejected:
        raise RuntimeError(f"{result.rejected} demo events were rejected at ingest")
    _demo_budget(ctx)
    return result.summary()


DEMO_BUDGET_USD = 20_000.0  # the demo spends about $560 a day: a budget it can be measured against


def _demo_budget(ctx: BootstrapContext) -> None:
    """Give the demo store a monthly budget in proportion to its traffic, unless one is set."""
    from observability.analytics.llm_observability import BUDGET_KEY
    from observability.timeutil import utcnow

    t = schema.control_state
    with ctx.store.begin() as conn:
        if conn.execute(sa.select(t.c.key).where(t.c.key == BUDGET_KEY)).first() is None:
            conn.execute(
                sa.insert(t).values(
                    key=BUDGET_KEY, value={"usd": DEMO_BUDGET_USD}, updated_by="demo", updated_at=utcnow()
                )  # fmt: skip
            )


# The one registration point. Order matters: the schema first, demo data last (after what other
# steps seed, e.g. alert rules and users, so that the demo meets a configured console).
STEPS: list[BootstrapStep] = [
    BootstrapStep("migrate", step_migrate, required=True),
    BootstrapStep("alert_rules", lazy("observability.alerting.rules:bootstrap_default_rules")),
    BootstrapStep("admin_user", lazy("observability.auth.cli:bootstrap_admin")),
    BootstrapStep("ingest_token", step_ingest_token),
    # other parts register theirs here, before the demo data
    BootstrapStep("demo_data", step_demo_data, demo_only=True),
]


def run(ctx: BootstrapContext, steps: list[BootstrapStep] | None = None) -> dict[str, str]:
    """Run the steps in order; returns {step: outcome}. Outcomes starting with "error" failed."""
    outcomes: dict[str, str] = {}
    for step in STEPS if steps is None else steps:
        if step.demo_only and not ctx.demo:
            outcomes[step.name] = "skipped (no --demo)"
            ctx.echo(f"  {step.name}: skipped (no --demo)")
            continue
        started = time.perf_counter()
        try:
            summary = step.run(ctx) or "done"
        except Exception as exc:  # noqa: BLE001 - report it and go on with the other steps
            log.debug("bootstrap step %s failed", step.name, exc_info=True)
            outcomes[step.name] = f"error: {type(exc).__name__}: {exc}"
            ctx.echo(f"  {step.name}: FAILED: {type(exc).__name__}: {exc}")
            if step.required:
                break
            continue
        outcomes[step.name] = summary
        ctx.echo(f"  {step.name}: {summary} ({time.perf_counter() - started:.1f} s)")
    return outcomes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m observability.bootstrap", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--demo", action="store_true", help="backfill demo traffic into an empty store")
    parser.add_argument(
        "--demo-hours", type=float, default=DEMO_HOURS, help="hours of demo history (default 24)"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of the demo traffic")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.log_level.upper() != "DEBUG":
        logging.getLogger("alembic").setLevel(logging.WARNING)
    settings = get_settings()
    store = Store.from_url(settings.database_url)
    ctx = BootstrapContext(store, settings, demo=args.demo, demo_hours=args.demo_hours, seed=args.seed,
                           echo=lambda line: print(line, flush=True))  # fmt: skip
    where = store.engine.url.render_as_string(hide_password=True)
    print(f"bootstrap: {where}", flush=True)
    try:
        outcomes = run(ctx)
    finally:
        store.dispose()
    failed = [name for name, outcome in outcomes.items() if outcome.startswith("error")]
    if failed:
        print(f"bootstrap: {len(failed)} step(s) failed: {', '.join(failed)}", flush=True)
        return 1
    print("bootstrap: ready", flush=True)
    return 0
