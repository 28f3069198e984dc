"""The hardware/software interface: everything the accelerator and the host must agree on.

Descriptor fields and op codes (:mod:`.descriptor`), the DDR layouts of feature maps and
conv pass blocks (:mod:`.ddr`), row tiles (:mod:`.tiling`), the folded stem (:mod:`.stem`)
and the register map with its error codes and JSON (:mod:`.regmap`). Plain Python and numpy
(Python 3.10 syntax): the gateware in ``rtl/`` and the firmware on the board's ARM cores both
import these modules, so neither ever needs the other, and the board needs no Amaranth.
"""
