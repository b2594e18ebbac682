"""The background worker: one module per job.

- `runner`: the `Worker` loop and `python -m observability.worker [--once]`;
- `leader`: the leader lock (exactly one worker runs the leader-only steps);
- `steps`: every step of the tick and `STEPS`, the one registration point;
- the worker's HTTP endpoints: `otlp` (decode OTLP trace bodies), `genai` (GenAI spans into LLM-call
  events), `receiver` (`/v1/traces`), `metrics` (`/metrics`), `health` (`/healthz`), `endpoints`
  (the three over one store), `response` (what they answer), and `server` (the only module that
  speaks HTTP, so it can be replaced alone).

May import the services (`store`, `analytics`, `alerting`, `control`, `auth`) and the contract
modules; never a page, `observability.ui` or Streamlit.
"""
