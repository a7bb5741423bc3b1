"""Circuit discovery: discoverers score every candidate; circuits are chosen afterwards (selections);
left-out candidates are replaced by an intervention."""

from modbench.registries import DISCOVERERS, INTERVENTIONS, SELECTIONS, register_discoverer

__all__ = ["DISCOVERERS", "INTERVENTIONS", "SELECTIONS", "register_discoverer"]
