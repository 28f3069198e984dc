"""cocotb testbenches on the generated Verilog, compared with the golden model."""
