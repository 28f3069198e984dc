"""Amaranth hardware: the accelerator and its one configuration (rtl.config)."""
