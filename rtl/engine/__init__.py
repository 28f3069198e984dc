"""The layer engine and the accelerator top, as components (docs/engine.md, "Components").

``DescriptorCheck`` (``check``) derives a descriptor's quantities and verdicts;
``MapReader`` (``unpack``) turns a feature map's bus words into vectors; ``WeightLoader``
(``loader``) brings a conv's passes into the weight banks; ``Writer`` (``writer``) packs the
out buffer into bus words for DDR; the ``Engine`` (``sequencer``) runs a chain of descriptors
with them over the act and out buffers, the conv core and the vector units;
``Accelerator`` (``accelerator``) puts the AXI4-Lite register slave in front of it.
"""

from .accelerator import Accelerator
from .check import CHECK_CYCLES, DescriptorCheck
from .loader import WeightLoader
from .sequencer import AHEAD_CYCLES, ELIG_CYCLES, Engine, weight_buses
from .unpack import MapReader
from .writer import Writer

__all__ = ["AHEAD_CYCLES", "CHECK_CYCLES", "ELIG_CYCLES", "Accelerator", "DescriptorCheck",
           "Engine", "MapReader", "WeightLoader", "Writer", "weight_buses"]
