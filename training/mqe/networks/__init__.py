"""Networks shared by the agents: observation trunks (ResNet34, small conv, state MLP), MLPs and
ensembles of MLP heads."""

from mqe.networks.mlp import MLP, EnsembleMLP
from mqe.networks.resnet import ResNet34, TrunkWeightsError, load_resnet34_weights
from mqe.networks.trunks import ObservationSpec, as_observation_spec, get_trunk_config, make_trunk

__all__ = [
    "MLP",
    "EnsembleMLP",
    "ResNet34",
    "TrunkWeightsError",
    "load_resnet34_weights",
    "ObservationSpec",
    "as_observation_spec",
    "get_trunk_config",
    "make_trunk",
]
