"""Plans: what to change, why, and at what risk. Pure; never talks to Docker."""

from reconciler.plan.model import Action, Change, Plan, Risk
from reconciler.plan.planner import plan

__all__ = ["Action", "Change", "Plan", "Risk", "plan"]
