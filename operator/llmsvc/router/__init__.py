"""The data plane: an OpenAI-compatible, streaming, queue- and cache-aware load balancer."""
