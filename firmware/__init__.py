"""Zynq ARM-side driver: load a bitstream, map registers, run a network."""
