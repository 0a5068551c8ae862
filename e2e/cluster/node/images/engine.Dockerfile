# The test engine image: the project image plus a `vllm` executable that accepts the `vllm serve`
# command lines the operator renders and runs `llmsvc sim` behind them (llmsvc/sim/vllm_cli.py).
# Built by e2e/cluster/node/images.sh; never published.
ARG BASE_IMAGE=localhost/llmsvc/llmservice-operator:dev
FROM ${BASE_IMAGE}
USER 0:0
RUN printf '#!/bin/sh\nexec python3 -m llmsvc.sim.vllm_cli "$@"\n' >/usr/local/bin/vllm \
    && chmod 0755 /usr/local/bin/vllm
USER 10001:10001
ENTRYPOINT []
CMD ["vllm", "--help"]
