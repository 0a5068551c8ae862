"""The controller: kopf handlers and the one small layer that writes to the Kubernetes API."""
