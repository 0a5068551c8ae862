"""llmservice-operator: serve large language models with vLLM across many GPU nodes on Kubernetes.

The package is laid out so that each folder has one responsibility and imports only point down:
``api`` (models, the CRD's single source), ``render`` and ``plan`` (pure functions), ``controller``
(the only layer that writes to the API server), and the data-plane programs ``router``, ``puller``
and ``sim``. ``cli`` ties them into the ``llmsvc`` command.
"""

__version__ = "0.1.0"
