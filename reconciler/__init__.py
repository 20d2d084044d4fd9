"""dsr: a declarative, GitOps-style reconciler for Docker storage.

The public API is what ``__all__`` lists; every other module is private.
"""

from reconciler.errors import (
    DsrError,
    EngineError,
    PlanError,
    PolicyError,
    SpecError,
    SpecIssue,
    StalePlanError,
)
from reconciler.spec import Desired, Policy, load_policy, load_spec

__version__ = "0.1.0"

__all__ = [
    "Desired",
    "DsrError",
    "EngineError",
    "PlanError",
    "Policy",
    "PolicyError",
    "SpecError",
    "SpecIssue",
    "StalePlanError",
    "__version__",
    "load_policy",
    "load_spec",
]
