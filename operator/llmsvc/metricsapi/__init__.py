"""The operator's own ``external.metrics.k8s.io`` API: the queue of every LLMService.

``queue`` is pure (parse a scrape, sum a service's targets, decide what is stale), ``scraper``
reads the routers' and leaders' ``/metrics`` at a short interval, ``auth`` does the delegated
authentication and authorization the aggregation layer requires, ``certs`` makes a self-signed
serving certificate, and ``server`` answers the API over TLS.
"""

GROUP = "external.metrics.k8s.io"
VERSION = "v1beta1"
QUEUE_METRIC = "llmsvc_queue_length"
