"""Spec files in, a checked and merged ``Desired`` state out."""

from reconciler.spec.backups import Backup, Keep
from reconciler.spec.desired import Desired, Origin
from reconciler.spec.load import describe_counts, find_spec_files, load_checked, load_spec
from reconciler.spec.models import (
    Container,
    Image,
    Mount,
    SpecFile,
    Volume,
    VolumeContainer,
    VolumesFrom,
)
from reconciler.spec.policy import Policy, load_policy

__all__ = [
    "Backup",
    "Container",
    "Desired",
    "Image",
    "Keep",
    "Mount",
    "Origin",
    "Policy",
    "SpecFile",
    "Volume",
    "VolumeContainer",
    "VolumesFrom",
    "describe_counts",
    "find_spec_files",
    "load_checked",
    "load_policy",
    "load_spec",
]
