"""Tests of the probes that run inside the engine container."""
