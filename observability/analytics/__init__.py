"""Read-side services over the store: the window and read-plan engine, performance and SLAs, LLM
calls and pricing, bot metrics, agent costs, conversation analytics and scoring, live monitoring.

May import `observability.store` and the contract modules. Every figure a page, an alert or
`/metrics` shows is computed here, once.
"""
