"""Pure decisions of the operator: group health, restarts, rollouts, status and the write plan.

Nothing here talks to the API server or reads the clock; the controller passes ``now`` in.
"""

from llmsvc.plan.events import merged
from llmsvc.plan.planner import Event, Plan, key, owned_by, plan, with_rejections
from llmsvc.plan.restarts import RestartPolicy
from llmsvc.plan.status import invalid_status

__all__ = [
    "Event",
    "Plan",
    "RestartPolicy",
    "invalid_status",
    "key",
    "merged",
    "owned_by",
    "plan",
    "with_rejections",
]
