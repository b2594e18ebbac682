"""Operations console for LLM-driven chat bots: tracing, SLAs, alerting, analytics and control."""

__version__ = "0.1.0"
