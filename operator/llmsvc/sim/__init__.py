"""A vLLM-compatible simulator: OpenAI API, vLLM metrics and a latency model for routing."""
