"""The LLMService API (v1alpha1): pydantic models that are the single source of the CRD schema."""

from llmsvc.api.llmservice import (
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    InvalidSpecError,
    LLMService,
    parse,
)
from llmsvc.api.spec import LLMServiceSpec
from llmsvc.api.status import Condition, GroupStatus, LLMServiceStatus

__all__ = [
    "API_VERSION",
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "Condition",
    "GroupStatus",
    "InvalidSpecError",
    "LLMService",
    "LLMServiceSpec",
    "LLMServiceStatus",
    "parse",
]
