"""The model zoo's quick mode: FedMRN at its defaults learns on models unlike the paper's CNNs."""

import pytest

from benchmarks.zoo import CASES, main, run_case
from fedmrn_pl import MaskingConfig

pytestmark = pytest.mark.slow

CHANCE = 0.1  # ten digit classes


@pytest.mark.parametrize("model, margin", [("transformer", 0.25), ("gcn", 0.5)])
def test_fedmrn_learns_on_a_transformer_and_a_gcn_well_above_chance(model, margin):
    row = run_case(CASES[model], "fedmrn", seed=0, quick=True, masking=MaskingConfig())
    assert row["final"] > CHANCE + margin, row["curve"]
    assert row["mask_bits_per_element"] <= 1.0
    assert all(value > 0 for value in row["relative_update"])  # the logged diagnostic: masked weights moved


def test_fedmrn_trains_peft_lora_adapters_of_a_hugging_face_bert():
    pytest.importorskip("peft")  # the zoo extra; .ci/run installs it
    row = run_case(CASES["bert_lora"], "fedmrn", seed=0, quick=True, masking=MaskingConfig())
    assert row["rounds"] == CASES["bert_lora"].quick_rounds and len(row["curve"]) == row["rounds"]
    assert row["mask_bits_per_element"] <= 1.0


def test_the_command_line_names_unknown_models():
    with pytest.raises(SystemExit):
        main(["--quick", "--models", "resnet9000"])
