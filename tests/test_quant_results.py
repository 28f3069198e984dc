"""quant.results: the statistics and the plain-language comparison of the table."""

import pytest

from quant.results import _fmt, _stats, summarize


def test_mean_and_sample_std():
    s = _stats([97.0, 98.0, 99.0])
    assert (s["mean"], s["std"], s["n"]) == (98.0, pytest.approx(1.0), 3)
    assert _stats([97.5])["std"] == 0.0
    assert _fmt([97.0, 98.0, 99.0]) == "98.00 ± 1.00 (97.00, 98.00, 99.00)"
    assert _fmt([97.5]) == "97.50"


def _rows(ilmpq1, ilmpq2, baseline):
    return {"Fixed-4, all layers": {"int": baseline}, "ILMPQ-1 60:35:5": {"int": ilmpq1},
            "ILMPQ-2 65:30:5": {"int": ilmpq2}}


def test_summary_states_agreement_and_disagreement():
    lines = summarize(_rows([98.0, 99.0], [96.0, 96.5], [97.0, 97.0]), [98.5, 99.5])
    assert lines == [
        "- ILMPQ-1 60:35:5: 98.50 %, 0.50 points below FP32 (99.00 %): within 1 point.",
        "  At least as good as every baseline row on the mean.",
        "- ILMPQ-2 65:30:5: 96.25 %, 2.75 points below FP32 (99.00 %): NOT within 1 point.",
        "  Behind 1 baseline row(s) on the mean: Fixed-4, all layers 97.00 %. Here the data "
        "disagrees with the paper's ordering.",
    ]
    above = summarize(_rows([99.5], [99.0], [99.0]), [99.0])
    assert above[0] == ("- ILMPQ-1 60:35:5: 99.50 %, 0.50 points above FP32 (99.00 %): "
                        "within 1 point.")
    assert above[3] == "  At least as good as every baseline row on the mean."
