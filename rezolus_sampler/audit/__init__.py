"""`rezolus-sampler audit`: check Rezolus BPF samplers against principles.md.

The room has three parts: `source` reads a sampler's C and Rust the way
Rezolus' build.rs and readers do, `checks` holds one function per
machine-checkable principle, and `report` runs them over a tree, takes the
reason for each finding from principles.md and prints it. `measure` loads,
attaches and times every sampler the kernel accepts (principle P14).

For tests and scripts::

    from rezolus_sampler.audit import audit_sampler
    findings = audit_sampler(tree, tree / "src/agent/samplers/blockio/linux/ops")
"""

from rezolus_sampler.audit.checks import Finding
from rezolus_sampler.audit.report import Report, audit, audit_sampler, main

__all__ = ["Finding", "Report", "audit", "audit_sampler", "main"]
