"""Config loading: interpolations, file shapes, finite numbers and what run records hold."""

import pytest
from omegaconf import OmegaConf

from fedmrn_pl.config import ConfigError, load_config, to_container


@pytest.mark.parametrize(
    "overrides, words",
    [
        (["train.lr=${oc.env:FEDMRN_TEST_UNSET}"], ["'train.lr'", "FEDMRN_TEST_UNSET", "not found"]),
        (["train.rounds=${wandb.project}"], ["'train.rounds'", "could not be converted to Integer"]),
        (["wandb.group=${wandb.project}x${data.root}", "data.root=${wandb.group}"], ["Recursive interpolation"]),
        (["data.root=${no_such_resolver:x}"], ["'data.root'", "Unsupported interpolation type no_such_resolver"]),
        (["data.root=${train.no_such_key}"], ["'data.root'", "train.no_such_key", "not found"]),
    ],
)
def test_an_unresolvable_interpolation_is_a_one_line_config_error(monkeypatch, overrides, words):
    monkeypatch.delenv("FEDMRN_TEST_UNSET", raising=False)
    with pytest.raises(ConfigError) as error:
        load_config(None, overrides)
    message = str(error.value)
    assert "\n" not in message and message.startswith("cannot resolve the config")
    for word in words:
        assert word in message


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e999"])
@pytest.mark.parametrize("key", ["train.lr", "train.momentum", "train.weight_decay", "data.beta", "method.alpha"])
def test_non_finite_numbers_are_rejected_naming_the_key(key, value):
    with pytest.raises(ConfigError, match=rf"^{key}=(inf|-inf|nan) is not valid; it must be a finite number$"):
        load_config(None, [f"{key}={value}"])


def test_a_yaml_file_holding_a_list_is_a_config_error(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- train.rounds=5\n- seed=1\n")
    with pytest.raises(ConfigError, match="must hold a mapping of keys .* not a list"):
        load_config(path)


@pytest.mark.parametrize(
    "override", ["wandb.name=${oc.env:HOME}", "wandb.project=p-${oc.env:HOME}", "wandb.entity=${data.root}"]
)
def test_published_wandb_keys_refuse_interpolations(override):
    with pytest.raises(ConfigError, match="published to W&B, so it may not hold an interpolation"):
        load_config(None, [override])


def test_wandb_tags_refuse_an_interpolated_item(tmp_path):
    path = tmp_path / "tags.yaml"
    path.write_text("wandb:\n  tags: [mnist, '${oc.env:HOME}']\n")
    with pytest.raises(ConfigError, match="wandb.tags="):
        load_config(path)


def test_run_records_keep_interpolations_as_written(monkeypatch):
    monkeypatch.setenv("FEDMRN_TEST_ROOT", "/secret/place")
    config = load_config(None, ["data.root=${oc.env:FEDMRN_TEST_ROOT}"])
    assert config.data.root == "/secret/place"  # the run uses the value
    assert to_container(config, resolve=False)["data"]["root"] == "${oc.env:FEDMRN_TEST_ROOT}"  # records do not
    assert "/secret/place" not in OmegaConf.to_yaml(config)


def test_the_monitor_is_one_of_the_built_in_tasks_keys_and_its_mode_max_or_min():
    assert load_config(None, ["train.monitor=test/loss"]).train.monitor_mode is None  # min, from the key
    with pytest.raises(ConfigError, match=r"^train.monitor='test_mse' is not valid; choose one of \['train/loss', 'test/acc', 'test/loss'\]"):
        load_config(None, ["train.monitor=test_mse"])
    with pytest.raises(ConfigError, match=r"train.monitor_mode: Invalid value 'lower', expected one of \[max, min\]"):
        load_config(None, ["train.monitor_mode=lower"])


@pytest.mark.parametrize("override", ["data.test_batch_size=99999999999999999999999999999", "train.batch_size=9223372036854775808"])
def test_counts_too_large_for_a_data_loader_are_refused_up_front(override):
    with pytest.raises(ConfigError, match=r"must be an int in \[1, 2147483647\]"):
        load_config(None, [override])


@pytest.mark.parametrize("text", ["", "null\n", "# nothing yet\n"])
def test_an_empty_config_file_is_refused_not_run_with_the_defaults(tmp_path, text):
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="is empty"):
        load_config(path)


def test_an_interpolation_that_fails_never_shows_the_environment_value(monkeypatch):
    monkeypatch.setenv("FEDMRN_TEST_SECRET", "hunter2-token")
    for override in ["train.rounds=${oc.env:FEDMRN_TEST_SECRET}", "data.name=${oc.env:FEDMRN_TEST_SECRET}"]:
        with pytest.raises(ConfigError) as refused:
            load_config(None, [override])
        assert "hunter2" not in str(refused.value) and "not shown" in str(refused.value)
    with pytest.raises(ConfigError, match="FEDMRN_TEST_UNSET.*not found"):
        load_config(None, ["data.root=${oc.env:FEDMRN_TEST_UNSET}"])
