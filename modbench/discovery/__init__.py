"""Circuit discovery: discoverers score every candidate neuron; circuits are chosen afterwards."""

from modbench.discovery.base import DISCOVERERS, DiscovererSpec, NeuronScores, register_discoverer
from modbench.discovery.circuit import Circuits

__all__ = ["DISCOVERERS", "Circuits", "DiscovererSpec", "NeuronScores", "register_discoverer"]
