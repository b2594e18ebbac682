"""The background worker: runner and leader lock, the steps of a tick, and the worker's HTTP
endpoints (OTLP receiver, Prometheus metrics, health).

May import the services (`store`, `analytics`, `alerting`, `control`, `auth`); never a page or
Streamlit. `python -m observability.worker [--once]` runs it.
"""
