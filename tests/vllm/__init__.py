"""Tests against real vLLM (its CPU build, in its own venv): marker ``vllm``."""
