"""Register map generation, JSON and messages; the AXI4-Lite slave in the Amaranth simulator."""

from __future__ import annotations

import gc
import json
import re
import warnings
from pathlib import Path

import pytest
from amaranth.hdl import Fragment, Value
from amaranth.sim import Simulator

from rtl.axil import AxiLiteSignature, AxiLiteSlave, register_signature, to_verilog
from rtl.config import preset
from rtl.interface.regmap import (
    MAGIC,
    REGMAP_VERSION,
    Access,
    ErrorCode,
    Field,
    Register,
    RegisterMap,
    build_regmap,
    main,
)

BOARDS = ("pynq-z2", "zc706")
OKAY, SLVERR = 0, 2
ROOT = Path(__file__).resolve().parent.parent

# The order software relies on; appending is allowed, reordering needs a REGMAP_VERSION bump.
EXPECTED_NAMES = [
    "MAGIC", "VERSION", "ID", "HW_ARRAY", "HW_DATA", "HW_BUS", "HW_CLOCK", "CTRL", "STATUS",
    "ERROR_CODE", "IRQ_ENABLE", "IRQ_STATUS", "DESC_ADDR", "DESC_COUNT", "DESC_DONE",
    "WINDOW_BASE", "WINDOW_SIZE",
    "CYCLES_LO", "CYCLES_HI", "STALL_CYCLES", "SCRATCH",
]


def small_map() -> RegisterMap:
    return RegisterMap([
        Register(name="A", access="rw"),
        Register(name="B", access="ro", width=8),
    ], config_name="t", config_hash=0x12345678)


# ---- generation ------------------------------------------------------------------------------

@pytest.mark.parametrize("board", BOARDS)
def test_offsets_follow_declaration_order(board: str) -> None:
    regmap = build_regmap(preset(board))
    assert [reg.name for reg in regmap] == EXPECTED_NAMES
    assert [offset for offset, _ in regmap.items()] == list(range(0, 4 * len(EXPECTED_NAMES), 4))
    assert regmap.offset("SCRATCH") == 4 * 20
    assert regmap.size == 84
    assert regmap.addr_width == 7
    assert regmap.at(0x51) is regmap["SCRATCH"]
    assert regmap.at(84) is None


@pytest.mark.parametrize("board", BOARDS)
def test_constants_describe_the_config(board: str) -> None:
    cfg = preset(board)
    regmap = build_regmap(cfg)
    assert regmap["MAGIC"].reset == 0x494C4D50
    assert regmap["VERSION"].reset == REGMAP_VERSION == 2
    assert regmap["ID"].reset == cfg.config_hash == regmap.config_hash
    assert regmap["HW_ARRAY"].reset == cfg.pot_rows | cfg.dsp_rows << 16
    assert regmap["HW_DATA"].reset == (cfg.pot_cols | cfg.act_bits << 16 | cfg.input_bits << 20
                                       | cfg.acc_bits << 24 | cfg.split_input << 30)
    assert regmap["HW_BUS"].reset == (cfg.axi_data_width | cfg.axi_addr_width << 8
                                      | 0b111 << 16)
    assert regmap["HW_CLOCK"].reset == {"pynq-z2": 125_000, "zc706": 150_000}[board]
    assert regmap["HW_DATA"].unpack(regmap["HW_DATA"].reset) == {
        "vec_len": cfg.vec_len, "act_bits": cfg.act_bits, "input_bits": cfg.input_bits,
        "acc_bits": cfg.acc_bits, "split_input": int(cfg.split_input)}
    split = build_regmap(cfg.replace(split_input=True, input_bits=8))["HW_DATA"]
    assert split.unpack(split.reset)["split_input"] == 1
    consts = [reg.name for reg in regmap if reg.constant]
    assert consts == ["MAGIC", "VERSION", "ID", "HW_ARRAY", "HW_DATA", "HW_BUS", "HW_CLOCK"]


def test_config_changes_reach_the_map() -> None:
    cfg = preset("zc706").replace(axi_addr_width=24, weight_formats=("pot4", "fixed4"))
    regmap = build_regmap(cfg)
    for name in ("DESC_ADDR", "WINDOW_BASE", "WINDOW_SIZE"):
        assert regmap[name].width == 24
        assert regmap[name].access is Access.RW
    assert regmap["HW_BUS"].unpack(regmap["HW_BUS"].reset) == {
        "axi_data_width": 64, "axi_addr_width": 24, "pot4": 1, "fixed4": 1, "fixed8": 0}
    assert regmap["ID"].reset == cfg.config_hash != preset("zc706").config_hash


def test_access_kinds() -> None:
    regmap = build_regmap(preset("zc706"))
    kinds = {reg.name: reg.access.value for reg in regmap if not reg.constant}
    assert kinds == {
        "CTRL": "wo", "STATUS": "ro", "ERROR_CODE": "ro", "IRQ_ENABLE": "rw",
        "IRQ_STATUS": "w1c", "DESC_ADDR": "rw", "DESC_COUNT": "rw", "DESC_DONE": "ro",
        "WINDOW_BASE": "rw", "WINDOW_SIZE": "rw",
        "CYCLES_LO": "ro", "CYCLES_HI": "ro", "STALL_CYCLES": "ro", "SCRATCH": "rw"}
    assert regmap["CTRL"].pack({"start": 1}) == 1
    assert regmap["CTRL"].pack({"soft_reset": 1}) == 2
    assert regmap["STATUS"].unpack(0b101) == {"busy": 1, "done": 0, "error": 1}


def test_error_codes_in_the_map() -> None:
    field = build_regmap(preset("zc706"))["ERROR_CODE"].field("code")
    assert dict(field.values) == {
        "NONE": 0, "BAD_DESCRIPTOR": 1, "ADDR_OUT_OF_WINDOW": 2, "MISALIGNED_ADDR": 3,
        "LAYER_TOO_LARGE": 4, "UNSUPPORTED_FORMAT": 5, "AXI_RESPONSE": 6, "ABORTED": 7}
    assert dict(field.values) == {code.name: int(code) for code in ErrorCode}


def test_build_regmap_wants_a_config() -> None:
    with pytest.raises(TypeError, match=r"^build_regmap needs a HwConfig, not 'zc706'$"):
        build_regmap("zc706")  # type: ignore[arg-type]


# ---- JSON ------------------------------------------------------------------------------------

@pytest.mark.parametrize("board", BOARDS)
def test_json_round_trip(board: str) -> None:
    regmap = build_regmap(preset(board))
    text = regmap.to_json()
    back = RegisterMap.from_json(text)
    assert back == regmap
    assert back.to_json() == text
    data = json.loads(text)
    assert data["version"] == 2
    assert data["config"] == board
    assert data["config_hash"] == preset(board).config_hash
    assert [r["offset"] for r in data["registers"]] == [4 * i for i in range(21)]
    ctrl = data["registers"][7]
    assert ctrl == {
        "name": "CTRL", "offset": 28, "width": 2, "access": "wo", "constant": False, "reset": 0,
        "description": ctrl["description"],
        "fields": [
            {"name": "start", "bit_offset": 0, "width": 1,
             "description": ctrl["fields"][0]["description"]},
            {"name": "soft_reset", "bit_offset": 1, "width": 1,
             "description": ctrl["fields"][1]["description"]}]}
    assert data["registers"][9]["fields"][0]["values"]["ADDR_OUT_OF_WINDOW"] == 2


def _edited(change) -> str:
    data = json.loads(build_regmap(preset("zc706")).to_json())
    change(data)
    return json.dumps(data)


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["registers"][3].update(offset=16),
     r"^register map JSON puts 'HW_ARRAY' at offset 16, but its place in the list gives 0xc; "
     r"regenerate the JSON rather than editing offsets$"),
    (lambda d: d.update(version=3),
     r"^register map JSON has version 3, but this code reads version 2; regenerate it with "
     r"'python -m rtl.interface.regmap --json'$"),
    (lambda d: d.update(size=80),
     r"^register map JSON gives size 80, but its 21 registers take 84 bytes$"),
    (lambda d: d.pop("registers"), r"^register map JSON lacks the key 'registers'$"),
    (lambda d: d.update(extra=1),
     r"^register map JSON has unknown key 'extra'; known keys: version, config, config_hash, "
     r"data_width, size, registers$"),
    (lambda d: d["registers"][0].pop("access"),
     r"^register map JSON: register 'MAGIC' lacks the key 'access'$"),
    (lambda d: d["registers"][0].update(addr=0),
     r"^register map JSON: register 'MAGIC' has unknown key 'addr'; known keys: name, offset, "
     r"width, access, reset, constant, description, fields$"),
    (lambda d: d["registers"][1].update(name="MAGIC"),
     r"^register map has two registers named 'MAGIC'; register names must be unique$"),
    (lambda d: d["registers"][7]["fields"][1].update(bit_offset=0),
     r"^register 'CTRL': fields 'start' \(bits 0\) and 'soft_reset' \(bits 0\) overlap$"),
])
def test_json_errors(change, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RegisterMap.from_json(_edited(change))


def test_json_malformed() -> None:
    with pytest.raises(ValueError, match=r"^register map JSON is malformed: "):
        RegisterMap.from_json("{")
    with pytest.raises(TypeError, match=r"^register map JSON must be an object, not list$"):
        RegisterMap.from_json("[]")


def test_cli(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--board", "pynq-z2", "--json"]) == 0
    assert RegisterMap.from_json(capsys.readouterr().out) == build_regmap(preset("pynq-z2"))
    assert main(["--board", "zc706", "--markdown"]) == 0
    out = capsys.readouterr().out
    assert "| `0x001c` | `CTRL` | wo | 2 | `0x0` |" in out
    assert f"| `0x0000` | `MAGIC` | ro (constant) | 32 | `{MAGIC:#x}` |" in out


def test_docs_table_is_current() -> None:
    """docs/registers.md holds the zc706 table exactly as the regmap command prints it."""
    doc = (ROOT / "docs" / "registers.md").read_text()
    assert build_regmap(preset("zc706")).markdown() in doc, (
        "docs/registers.md is stale: paste the output of "
        "'./run python -m rtl.interface.regmap --board zc706 --markdown' into it")


# ---- validation messages ---------------------------------------------------------------------

@pytest.mark.parametrize(("make", "exc", "message"), [
    (lambda: Register(name="x", access="rw"), ValueError,
     r"^register name must be an upper-case identifier \(letters, digits, '_'\), not 'x'$"),
    (lambda: Register(name="A", access="rx"), ValueError,
     r"^register 'A': access must be one of ro, rw, wo, w1c, not 'rx'$"),
    (lambda: Register(name="A", access="rw", width=33), ValueError,
     r"^register 'A': width must be an integer from 1 to 32, not 33$"),
    (lambda: Register(name="A", access="rw", width=4, reset=16), ValueError,
     r"^register 'A': reset value 0x10 does not fit 4 bits$"),
    (lambda: Register(name="A", access="rw", constant=True), ValueError,
     r"^register 'A': only 'ro' registers can be constant, not 'rw' ones$"),
    (lambda: Register(name="A", access="rw", width=8, fields=(Field("f", 4, 5),)), ValueError,
     r"^register 'A': field 'f' \(bits 8:4\) exceeds the register width of 8 bits$"),
    (lambda: Register(name="A", access="rw", fields=(Field("f", 0, 4), Field("g", 3, 2))),
     ValueError, r"^register 'A': fields 'f' \(bits 3:0\) and 'g' \(bits 4:3\) overlap$"),
    (lambda: Register(name="A", access="rw", fields=(Field("f", 0), Field("f", 1))),
     ValueError, r"^register 'A' has two fields named 'f'$"),
    (lambda: Field("F", 0), ValueError,
     r"^field name must be a lower-case identifier \(letters, digits, '_'\), not 'F'$"),
    (lambda: Field("f", -1), TypeError, r"^field 'f': offset must be an integer >= 0, not -1$"),
    (lambda: Field("f", 0, 2, values=(("BIG", 4),)), ValueError,
     r"^field 'f': value BIG=4 does not fit 2 bits$"),
    (lambda: RegisterMap([Register(name="A", access="rw"), Register(name="A", access="ro")],
                         config_name="t", config_hash=0), ValueError,
     r"^register map has two registers named 'A'; register names must be unique$"),
    (lambda: RegisterMap([], config_name="t", config_hash=0), ValueError,
     r"^a register map needs at least one register$"),
    (lambda: RegisterMap([Register(name="A", access="rw")], config_name="t",
                         config_hash=1 << 32), TypeError,
     r"^register map config_hash must be an unsigned 32-bit integer, not 4294967296$"),
])
def test_validation_messages(make, exc: type[Exception], message: str) -> None:
    with pytest.raises(exc, match=message):
        make()


def test_check_identity() -> None:
    regmap = build_regmap(preset("zc706"))
    other = preset("pynq-z2").config_hash
    own = preset("zc706").config_hash
    regmap.check_identity(0x494C4D50, 2, preset("zc706").config_hash)
    with pytest.raises(ValueError, match=r"^no accelerator at this address: MAGIC reads "
                                         r"0xffffffff, expected 0x494c4d50; "):
        regmap.check_identity(0xFFFF_FFFF, 1, other)
    with pytest.raises(ValueError, match=r"^the hardware has register map version 1, this map "
                                         r"is version 2; "):
        regmap.check_identity(0x494C4D50, 1, other)
    with pytest.raises(ValueError, match=rf"^the bitstream was built from configuration "
                                         rf"{other:08x}, but this register map is for 'zc706' "
                                         rf"\({own:08x}\); rebuild with 'python build.py --board "
                                         rf"zc706' or load the matching build$"):
        regmap.check_identity(0x494C4D50, 2, other)


def test_lookup_messages() -> None:
    regmap = small_map()
    with pytest.raises(ValueError, match=r"^register map has no register 'C'; registers: A, B$"):
        regmap.offset("C")
    reg = build_regmap(preset("zc706"))["CTRL"]
    with pytest.raises(ValueError,
                       match=r"^register 'CTRL' has no field 'go'; fields: start, soft_reset$"):
        reg.pack({"go": 1})
    with pytest.raises(ValueError, match=r"^register 'CTRL': value 2 does not fit field 'start' "
                                         r"\(bits 0, 1 bits\)$"):
        reg.pack({"start": 2})


# ---- the AXI4-Lite slave in Amaranth's simulator ---------------------------------------------

def test_slave_arguments() -> None:
    regmap = small_map()
    slaves = [AxiLiteSlave(regmap=regmap), AxiLiteSlave(regmap=regmap, addr_width=12)]
    for slave in slaves:
        Fragment.get(slave, None)
    assert slaves[0].addr_width == 3
    assert slaves[1].axil.signature.flip() == AxiLiteSignature(addr_width=12)
    assert slaves[1].axil.signature.flip() != AxiLiteSignature(addr_width=11)
    with pytest.raises(ValueError, match=r"^AXI4-Lite address width must be from 2 to 32 bits, "
                                         r"not 33$"):
        AxiLiteSignature(addr_width=33)
    with pytest.raises(ValueError, match=r"^AXI4-Lite data width must be 32 or 64, not 16$"):
        AxiLiteSignature(addr_width=8, data_width=16)
    with warnings.catch_warnings():
        # A component whose constructor raised is never elaborated; that is the point here.
        warnings.simplefilter("ignore")
        with pytest.raises(TypeError, match=r"^AxiLiteSlave needs a RegisterMap, not None$"):
            AxiLiteSlave(regmap=None)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=r"^AxiLiteSlave addr_width must be from 3 \(to reach "
                                             r"all 0x8 bytes of the register map\) to 32, not 2$"):
            AxiLiteSlave(regmap=regmap, addr_width=2)
        gc.collect()


def test_core_ports() -> None:
    sig = register_signature(build_regmap(preset("zc706")))
    assert sorted(sig.members) == sorted(
        n.lower() for n in EXPECTED_NAMES[7:])  # constants have no port
    text = to_verilog(AxiLiteSlave(regmap=build_regmap(preset("pynq-z2"))))
    ports = set(re.findall(r"^\s*(?:input|output)\s+(?:\[\d+:0\]\s+)?(\w+);", text, re.M))
    axil = {"awaddr", "awvalid", "awready", "wdata", "wstrb", "wvalid", "wready", "bresp",
            "bvalid", "bready", "araddr", "arvalid", "arready", "rdata", "rresp", "rvalid",
            "rready"}
    assert {f"s_axil_{n}" for n in axil} | {"clk", "rst", "regs__ctrl__strobe",
                                            "regs__irq_status__set"} <= ports
    assert re.search(r"output \[31:0\] s_axil_rdata;", text)


#: Cycles a handshake may take before a testbench gives up (a hang is a failure, not a stall).
TIMEOUT = 50


class Bus:
    """A small AXI4-Lite master for Amaranth testbenches, with control over channel order."""

    def __init__(self, ctx, dut: AxiLiteSlave) -> None:
        self.ctx = ctx
        self.bus = dut.axil

    async def _send(self, valid, ready, fields: list, delay: int = 0) -> None:
        ctx = self.ctx
        for _ in range(delay):
            await ctx.tick()
        for sig, value in fields:
            ctx.set(sig, value)
        ctx.set(valid, 1)
        for _ in range(TIMEOUT):
            taken = ctx.get(ready)
            await ctx.tick()
            if taken:
                break
        else:
            raise AssertionError(f"no ready within {TIMEOUT} cycles")
        ctx.set(valid, 0)

    async def _recv(self, valid, ready, fields: list, wait: int = 0) -> list[int]:
        ctx = self.ctx
        for _ in range(wait):  # hold ready low: the response must stay put
            await ctx.tick()
        ctx.set(ready, 1)
        for _ in range(TIMEOUT):
            if ctx.get(valid):
                break
            await ctx.tick()
        else:
            raise AssertionError(f"no response within {TIMEOUT} cycles")
        values = [ctx.get(f) for f in fields]
        await ctx.tick()
        ctx.set(ready, 0)
        return values

    async def write(self, addr: int, data: int, strb: int = 0xF, *, aw_delay: int = 0,
                    w_delay: int = 0, b_wait: int = 0) -> int:
        """Send AW after ``aw_delay`` cycles and W after ``w_delay`` cycles; return BRESP."""
        b = self.bus
        ctx = self.ctx
        pending = {"aw": aw_delay, "w": w_delay}
        ctx.set(b.awaddr, addr)
        ctx.set(b.wdata, data)
        ctx.set(b.wstrb, strb)
        cycle = 0
        while pending:
            if cycle > TIMEOUT:
                raise AssertionError(f"AW/W not taken within {TIMEOUT} cycles")
            for ch, delay in list(pending.items()):
                valid, ready = (b.awvalid, b.awready) if ch == "aw" else (b.wvalid, b.wready)
                if cycle >= delay:
                    ctx.set(valid, 1)
                    if ctx.get(ready):
                        del pending[ch]
            await ctx.tick()
            for ch, valid in (("aw", b.awvalid), ("w", b.wvalid)):
                if ch not in pending:
                    ctx.set(valid, 0)
            cycle += 1
        (resp,) = await self._recv(b.bvalid, b.bready, [b.bresp], b_wait)
        return resp

    async def read(self, addr: int, *, r_wait: int = 0) -> tuple[int, int]:
        b = self.bus
        await self._send(b.arvalid, b.arready, [(b.araddr, addr)])
        data, resp = await self._recv(b.rvalid, b.rready, [b.rdata, b.rresp], r_wait)
        return data, resp


def run_sim(dut: AxiLiteSlave, bench) -> None:
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def testbench(ctx) -> None:
        await bench(ctx, Bus(ctx, dut))

    sim.add_testbench(testbench)
    sim.run()


@pytest.fixture
def zc706_slave() -> tuple[RegisterMap, AxiLiteSlave]:
    regmap = build_regmap(preset("zc706"))
    return regmap, AxiLiteSlave(regmap=regmap)


def test_slave_reads_constants_and_inputs(zc706_slave) -> None:
    regmap, dut = zc706_slave
    cfg = preset("zc706")

    async def bench(ctx, bus: Bus) -> None:
        assert await bus.read(regmap.offset("MAGIC")) == (0x494C4D50, OKAY)
        assert await bus.read(regmap.offset("ID")) == (cfg.config_hash, OKAY)
        assert await bus.read(regmap.offset("HW_ARRAY") + 2) == (
            cfg.pot_rows | cfg.dsp_rows << 16, OKAY)
        ctx.set(Value.cast(dut.regs.status.value), 0b101)
        ctx.set(Value.cast(dut.regs.cycles_hi.value), 0xFEDCBA98)
        assert await bus.read(regmap.offset("STATUS")) == (0b101, OKAY)
        assert await bus.read(regmap.offset("CYCLES_HI")) == (0xFEDCBA98, OKAY)
        # Writes to read-only registers are answered OKAY and change nothing.
        assert await bus.write(regmap.offset("MAGIC"), 0) == OKAY
        assert await bus.write(regmap.offset("STATUS"), 0) == OKAY
        assert await bus.read(regmap.offset("MAGIC")) == (0x494C4D50, OKAY)
        assert await bus.read(regmap.offset("STATUS")) == (0b101, OKAY)

    run_sim(dut, bench)


def test_slave_rw_and_wstrb(zc706_slave) -> None:
    regmap, dut = zc706_slave
    scratch, desc, irq_en = (regmap.offset(n) for n in ("SCRATCH", "DESC_ADDR", "IRQ_ENABLE"))

    async def bench(ctx, bus: Bus) -> None:
        assert await bus.read(scratch) == (0, OKAY)
        assert await bus.write(scratch, 0x11223344) == OKAY
        assert await bus.read(scratch) == (0x11223344, OKAY)
        assert await bus.write(scratch, 0xAABBCCDD, strb=0b0101) == OKAY
        assert await bus.read(scratch) == (0x11BB33DD, OKAY)
        assert await bus.write(scratch, 0xAABBCCDD, strb=0b1000) == OKAY
        assert await bus.read(scratch) == (0xAABB33DD, OKAY)
        assert await bus.write(scratch, 0x0, strb=0) == OKAY
        assert await bus.read(scratch) == (0xAABB33DD, OKAY)
        assert await bus.write(desc, 0x1000_0040) == OKAY
        assert ctx.get(Value.cast(dut.regs.desc_addr.value)) == 0x1000_0040
        assert ctx.get(Value.cast(dut.regs.scratch.value)) == 0xAABB33DD
        # Only the implemented bits of a narrow register are kept.
        assert await bus.write(irq_en, 0xFFFF_FFFF) == OKAY
        assert await bus.read(irq_en) == (0b11, OKAY)
        assert ctx.get(dut.regs.irq_enable.value.done) == 1

    run_sim(dut, bench)


def test_slave_wo_strobe(zc706_slave) -> None:
    regmap, dut = zc706_slave
    ctrl = regmap.offset("CTRL")
    strobes: list[tuple[int, int]] = []

    async def bench(ctx, bus: Bus) -> None:
        assert await bus.write(ctrl, 0b01) == OKAY
        assert await bus.write(ctrl, 0b10, strb=0b0010) == OKAY  # no byte of CTRL selected
        assert await bus.write(ctrl, 0xFFFF_FFFE) == OKAY
        assert await bus.read(ctrl) == (0, OKAY)
        for _ in range(3):
            await ctx.tick()

    async def watch(ctx) -> None:
        ctrl_value = Value.cast(dut.regs.ctrl.value)
        async for _, _, strobe, value in ctx.tick().sample(dut.regs.ctrl.strobe, ctrl_value):
            if strobe:
                strobes.append((ctx.get(dut.regs.ctrl.value.start), value))

    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def testbench(ctx) -> None:
        await bench(ctx, Bus(ctx, dut))

    sim.add_testbench(testbench)
    sim.add_testbench(watch, background=True)
    sim.run()
    # One single-cycle pulse per write that selects byte 0, carrying the written bits.
    assert strobes == [(1, 0b01), (0, 0b10)]


def test_slave_w1c(zc706_slave) -> None:
    regmap, dut = zc706_slave
    irq = regmap.offset("IRQ_STATUS")

    async def bench(ctx, bus: Bus) -> None:
        ctx.set(Value.cast(dut.regs.irq_status.set), 0b01)
        await ctx.tick()
        ctx.set(Value.cast(dut.regs.irq_status.set), 0b10)
        await ctx.tick()
        ctx.set(Value.cast(dut.regs.irq_status.set), 0)
        assert ctx.get(Value.cast(dut.regs.irq_status.value)) == 0b11
        assert await bus.read(irq) == (0b11, OKAY)
        assert await bus.write(irq, 0b01) == OKAY
        assert await bus.read(irq) == (0b10, OKAY)
        assert await bus.write(irq, 0b10, strb=0) == OKAY  # no byte selected: nothing cleared
        assert await bus.read(irq) == (0b10, OKAY)
        # The core sets bit 1 in the very cycle software clears it: the event survives.
        b = dut.axil
        for sig, value in ((b.awaddr, irq), (b.wdata, 0b11), (b.wstrb, 0xF), (b.awvalid, 1),
                           (b.wvalid, 1)):
            ctx.set(sig, value)
        assert (ctx.get(b.awready), ctx.get(b.wready)) == (1, 1)
        await ctx.tick()  # AW and W taken together; the write happens at the next edge
        ctx.set(b.awvalid, 0)
        ctx.set(b.wvalid, 0)
        ctx.set(Value.cast(dut.regs.irq_status.set), 0b10)
        await ctx.tick()
        ctx.set(Value.cast(dut.regs.irq_status.set), 0)
        assert ctx.get(b.bvalid) == 1
        assert await bus._recv(b.bvalid, b.bready, [b.bresp]) == [OKAY]
        assert await bus.read(irq) == (0b10, OKAY)
        assert await bus.write(irq, 0b11) == OKAY
        assert await bus.read(irq) == (0, OKAY)

    run_sim(dut, bench)


def test_slave_unmapped_is_slverr(zc706_slave) -> None:
    regmap, dut = zc706_slave
    scratch = regmap.offset("SCRATCH")

    async def bench(ctx, bus: Bus) -> None:
        assert await bus.write(scratch, 0x5A5A5A5A) == OKAY
        for addr in (regmap.size, regmap.size + 3, (1 << dut.addr_width) - 4):
            assert await bus.write(addr, 0xFFFF_FFFF) == SLVERR
            assert await bus.read(addr) == (0, SLVERR)
        assert await bus.read(scratch) == (0x5A5A5A5A, OKAY)
        # The address wraps at addr_width: 0x80 + SCRATCH is SCRATCH again on 7 address bits.
        assert dut.addr_width == 7

    run_sim(dut, bench)


@pytest.mark.parametrize(("aw_delay", "w_delay"), [(0, 0), (0, 4), (4, 0), (1, 2)])
def test_slave_aw_w_order(zc706_slave, aw_delay: int, w_delay: int) -> None:
    regmap, dut = zc706_slave
    scratch = regmap.offset("SCRATCH")
    value = 0x1000 * aw_delay + w_delay + 1

    async def bench(ctx, bus: Bus) -> None:
        assert await bus.write(scratch, value, aw_delay=aw_delay, w_delay=w_delay) == OKAY
        assert ctx.get(Value.cast(dut.regs.scratch.value)) == value
        assert await bus.write(regmap.size, 0, aw_delay=w_delay, w_delay=aw_delay) == SLVERR
        assert await bus.read(scratch) == (value, OKAY)

    run_sim(dut, bench)


def test_slave_holds_responses(zc706_slave) -> None:
    regmap, dut = zc706_slave
    scratch = regmap.offset("SCRATCH")

    async def bench(ctx, bus: Bus) -> None:
        b = dut.axil
        # Idle: every ready is up without any valid (no valid -> ready dependency).
        assert (ctx.get(b.awready), ctx.get(b.wready), ctx.get(b.arready)) == (1, 1, 1)
        assert await bus.write(scratch, 0xCAFE, b_wait=5) == OKAY
        assert await bus.read(scratch, r_wait=5) == (0xCAFE, OKAY)
        # While a read response waits, no new address is taken and the data does not change.
        await bus._send(b.arvalid, b.arready, [(b.araddr, scratch)])
        assert ctx.get(b.rvalid) == 1
        ctx.set(b.arvalid, 1)
        ctx.set(b.araddr, regmap.offset("MAGIC"))
        for _ in range(4):
            assert ctx.get(b.arready) == 0
            assert (ctx.get(b.rvalid), ctx.get(b.rdata)) == (1, 0xCAFE)
            await ctx.tick()
        ctx.set(b.arvalid, 0)
        assert await bus._recv(b.rvalid, b.rready, [b.rdata, b.rresp]) == [0xCAFE, OKAY]

    run_sim(dut, bench)


def test_slave_reset_values() -> None:
    regmap = RegisterMap([
        Register(name="A", access="rw", width=12, reset=0xABC),
        Register(name="B", access="w1c", width=3, reset=0b101),
        Register(name="C", access="wo", width=4),
    ], config_name="t", config_hash=0)
    dut = AxiLiteSlave(regmap=regmap)

    async def bench(ctx, bus: Bus) -> None:
        assert await bus.read(0) == (0xABC, OKAY)
        assert await bus.read(4) == (0b101, OKAY)
        assert await bus.write(0, 0x1234) == OKAY
        assert await bus.read(0) == (0x234, OKAY)
        assert await bus.read(8) == (0, OKAY)
        assert await bus.read(12) == (0, SLVERR)

    run_sim(dut, bench)
