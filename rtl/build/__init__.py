"""The tools wing: everything that turns the gateware in ``rtl/`` into a build package.

``flow`` runs the steps of ``build.py`` (with their state), ``parts`` says what is converted
and synthesized, ``synth`` drives Yosys (utilization and the timing estimate), ``vivado``
writes the Vivado project, ``resources`` does the utilization arithmetic, ``report`` and
``plots`` write the build report, and ``dse`` searches the design space. Nothing in ``rtl/``
outside this package imports it.
"""
