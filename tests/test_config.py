"""vaelab.config: the article's defaults, file round trips and validation."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from vaelab.config import TrainConfig, read_config_file
from vaelab.config_checks import flag, shown
from vaelab.errors import VaelabError


def test_defaults_are_the_article():
    c = TrainConfig()
    assert c.latent_size == 48
    assert c.hidden_size is None and c.hidden_layers == (96, 96)
    assert (c.model, c.activation, c.variance) == ("mlp", "relu", "softplus")
    assert (c.objective, c.samples, c.beta) == ("elbo", 1, 1.0)
    assert c.dataset == "mnist" and c.validation == 0 and c.class_names is None
    assert c.epochs == 10
    assert c.batch_size == 128
    assert c.lr == 1e-3 and isinstance(c.lr, float)
    assert c.optimizer == "adam"
    assert c.binarization == "threshold"
    assert c.seed == 0 and c.device == "auto"
    assert c.data_dir is None and c.download is False and c.test_every_epoch is True


def test_hidden_layers_follow_latent_unless_set():
    assert TrainConfig(latent_size=10).hidden_layers == (20, 20)
    assert TrainConfig(latent_size=10, hidden_size=7).hidden_layers == (7, 7)  # one width: the article's two layers
    assert TrainConfig(hidden_size=[512, 256, 128]).hidden_layers == (512, 256, 128)
    assert TrainConfig(model="conv", hidden_size=[]).hidden_layers == ()


def test_lists_round_trip_through_json_and_toml(tmp_path):
    c = TrainConfig(model="conv", hidden_size=[64], channels=[16, 32, 64], activation="tanh", variance="exp")
    assert c.to_dict()["channels"] == [16, 32, 64] and c.to_dict()["hidden_size"] == [64]
    for name in ("c.json", "c.toml"):
        c.save(tmp_path / name)
        assert TrainConfig.load(tmp_path / name) == c


def test_a_bare_data_dir_means_any_folder_of_idx_files_and_a_named_dataset_stays_named():
    assert TrainConfig().dataset == "mnist"
    assert TrainConfig(data_dir="/data").dataset == "folder"
    assert TrainConfig.from_dict({"data_dir": "/data"}).dataset == "folder"  # config files and old runs alike
    assert TrainConfig(dataset="fashion-mnist", data_dir="/data").dataset == "fashion-mnist"


@pytest.mark.parametrize(("fields", "message"), [
    ({"model": "resnet"}, r"model \(--model\) must be one of mlp, conv, mlp2"),
    ({"samples": 0}, r"samples \(--samples\) must be at least 1"),
    ({"objective": "beta", "beta": -1.0}, r"beta \(--beta\) must be a finite number, 0 or more"),
    ({"beta": 4.0}, r"weights the KL only with --objective beta"),
    ({"hidden_size": [0, 5]}, r"hidden_size \(--hidden-size\) must list at most 16 widths, each at least 1"),
    ({"hidden_size": [8] * 17}, r"must list at most 16 widths"),
    ({"channels": [8, 16]}, r"channels \(--channels\) sets the convolutions of --model conv only"),
    ({"model": "conv", "channels": [8] * 5}, r"must list 1 to 4 widths"),
    ({"activation": "gelu"}, r"activation \(--activation\) must be one of relu, tanh"),
    ({"variance": "square"}, r"variance \(--variance\) must be one of softplus, exp"),
    ({"dataset": "cifar"}, r"dataset \(--dataset\) must be one of mnist, fashion-mnist, kmnist, folder"),
    ({"dataset": "folder"}, r"folder needs --data-dir"),
    ({"class_names": "names.txt"}, r"names the classes of --dataset folder only"),
    ({"validation": -1}, r"validation \(--validation\) must be 0 \(none\)"),
])
def test_bad_names_and_combinations_are_one_line_errors_naming_the_fix(fields, message):
    with pytest.raises(VaelabError, match=message) as caught:
        TrainConfig(**fields)
    assert "\n" not in str(caught.value)


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        TrainConfig().epochs = 3  # type: ignore[misc]


def test_flag():
    assert flag("latent_size") == "--latent-size"
    assert flag("lr") == "--lr"


# --- round trips ------------------------------------------------------------------------
CUSTOM = dict(
    latent_size=20,
    hidden_size=200,
    epochs=3,
    batch_size=64,
    lr=0.005,
    optimizer="rmsprop",
    binarization="dynamic",
    seed=7,
    device="cpu",
    data_dir="/data/mnist",
    download=True,
    test_every_epoch=False,
)


@pytest.mark.parametrize("suffix", [".json", ".toml"])
@pytest.mark.parametrize("values", [{}, CUSTOM, {"hidden_size": 5}], ids=["defaults", "custom", "hidden"])
def test_round_trip(tmp_path, suffix, values):
    config = TrainConfig(**values)
    path = tmp_path / f"config{suffix}"
    config.save(path)
    loaded = TrainConfig.load(path)
    assert loaded == config
    assert loaded.to_dict() == config.to_dict()
    assert type(loaded.lr) is float


def test_json_keeps_none_toml_omits_it(tmp_path):
    config = TrainConfig()
    config.save(tmp_path / "c.json")
    config.save(tmp_path / "c.toml")
    as_json = json.loads((tmp_path / "c.json").read_text())
    assert as_json["hidden_size"] is None and as_json["data_dir"] is None
    assert set(as_json) == {f.name for f in dataclasses.fields(TrainConfig)}
    toml_text = (tmp_path / "c.toml").read_text()
    assert "hidden_size" not in toml_text and "data_dir" not in toml_text
    assert "latent_size = 48" in toml_text
    assert TrainConfig.load(tmp_path / "c.toml").hidden_size is None


def test_unknown_suffix_is_saved_and_read_as_json(tmp_path):
    path = tmp_path / "run.cfg"
    TrainConfig(epochs=4).save(path)
    assert json.loads(path.read_text())["epochs"] == 4
    assert TrainConfig.load(path).epochs == 4


@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_overrides_win(tmp_path, suffix):
    path = tmp_path / f"c{suffix}"
    TrainConfig(epochs=3, latent_size=20, lr=0.01).save(path)
    loaded = TrainConfig.load(path, epochs=5, hidden_size=11)
    assert loaded.epochs == 5 and loaded.hidden_size == 11
    assert loaded.latent_size == 20 and loaded.lr == 0.01  # untouched values come from the file


def test_partial_file_takes_defaults(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('epochs = 2\noptimizer = "rmsprop"\n')
    assert TrainConfig.load(path) == TrainConfig(epochs=2, optimizer="rmsprop")


# --- unknown keys and wrong types ------------------------------------------------------------
def test_unknown_key_named():
    with pytest.raises(VaelabError, match="unknown key.*latnt_size") as info:
        TrainConfig.from_dict({"latnt_size": 4, "epochs": 2})
    assert "config:" in str(info.value)


def test_unknown_key_in_file_names_key_and_path(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"epochs": 2, "learning_rate": 0.1, "zzz": 1}))
    with pytest.raises(VaelabError) as info:
        TrainConfig.load(path)
    message = str(info.value)
    assert str(path) in message and "learning_rate, zzz" in message


def test_unknown_override_rejected(tmp_path):
    path = tmp_path / "c.json"
    TrainConfig().save(path)
    with pytest.raises(VaelabError, match="bogus"):
        TrainConfig.load(path, bogus=1)


@pytest.mark.parametrize(
    "field, value",
    [
        ("latent_size", "48"),
        ("latent_size", True),
        ("latent_size", 48.0),
        ("hidden_size", False),
        ("hidden_size", "96"),
        ("epochs", 10.5),
        ("batch_size", None),
        ("lr", "fast"),
        ("lr", True),
        ("lr", None),
        ("optimizer", 1),
        ("download", "yes"),
        ("download", 1),
        ("test_every_epoch", 0),
        ("data_dir", 5),
        ("seed", "0"),
    ],
)
def test_wrong_type_rejected(field, value):
    with pytest.raises(VaelabError, match="must be") as info:
        TrainConfig(**{field: value})
    message = str(info.value)
    assert field in message and flag(field) in message and message.endswith(", got " + shown(value))


@pytest.mark.parametrize("field, value, said", [
    ("hidden_size", "512,256", 'hidden_size (--hidden-size) must be a whole number or a list of whole numbers such as '
                               '[512, 256] or left out (its default), got the string "512,256"'),
    ("lr", True, "lr (--lr) must be a number, got true"),
    ("batch_size", None, "batch_size (--batch-size) must be a whole number, got null"),
    ("lr", "0.01", 'lr (--lr) must be a number, got the string "0.01"'),
    ("epochs", 10.5, "epochs (--epochs) must be a whole number or left out (its default), got 10.5"),
])
def test_a_wrong_type_is_said_as_a_config_file_writes_it(field, value, said):
    with pytest.raises(VaelabError) as info:
        TrainConfig(**{field: value})
    assert str(info.value) == said


def test_wrong_type_from_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('latent_size = "48"\n')
    with pytest.raises(VaelabError, match="--latent-size"):
        TrainConfig.load(path)


def test_int_lr_becomes_float(tmp_path):
    c = TrainConfig(lr=1)
    assert c.lr == 1.0 and type(c.lr) is float
    path = tmp_path / "c.json"
    path.write_text('{"lr": 2}')
    loaded = TrainConfig.load(path)
    assert loaded.lr == 2.0 and type(loaded.lr) is float
    assert json.loads(json.dumps(loaded.to_dict()))["lr"] == 2.0


def test_ints_stay_ints():
    c = TrainConfig(latent_size=3, hidden_size=4, epochs=2)
    assert type(c.latent_size) is int and type(c.hidden_size) is int and type(c.epochs) is int


# --- impossible values -------------------------------------------------------------------
@pytest.mark.parametrize(
    "field, value",
    [
        ("latent_size", 0),
        ("latent_size", -3),
        ("batch_size", 0),
        ("epochs", 0),
        ("epochs", -1),
        ("lr", -0.001),
        ("lr", 0.0),
        ("lr", 0),
        ("lr", math.nan),
        ("lr", math.inf),
        ("lr", -math.inf),
        ("hidden_size", 0),
        ("seed", -1),
        ("optimizer", "sgd"),
        ("optimizer", "Adam"),
        ("binarization", "x"),
        ("device", "tpu"),
    ],
)
def test_impossible_value_rejected(field, value):
    with pytest.raises(VaelabError) as info:
        TrainConfig(**{field: value})
    message = str(info.value)
    assert flag(field) in message
    shown = float(value) if field == "lr" else value  # an int lr is made float first
    assert f"got {shown!r}" in message


@pytest.mark.parametrize(
    "field, value, hint",
    [
        ("optimizer", "sgd", "adam, rmsprop"),
        ("binarization", "x", "threshold, dynamic"),
        ("device", "tpu", "auto, cpu, cuda, mps"),
        ("lr", 0.0, "positive finite"),
        ("epochs", 0, "at least 1"),
    ],
)
def test_impossible_value_message_says_what_is_allowed(field, value, hint):
    with pytest.raises(VaelabError, match=hint):
        TrainConfig(**{field: value})


@pytest.mark.parametrize("field", ["latent_size", "batch_size", "epochs", "hidden_size"])
def test_smallest_allowed_values(field):
    assert getattr(TrainConfig(**{field: 1}), field) == 1


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "mps"])
def test_all_devices_accepted(device):
    assert TrainConfig(device=device).device == device


def test_impossible_value_in_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("batch_size = 0\n")
    with pytest.raises(VaelabError, match="--batch-size"):
        TrainConfig.load(path)


# --- read_config_file -----------------------------------------------------------------------
def test_read_config_file_json_and_toml(tmp_path):
    (tmp_path / "a.json").write_text('{"epochs": 3, "lr": 0.5}')
    (tmp_path / "a.toml").write_text("epochs = 3\nlr = 0.5\n")
    assert read_config_file(tmp_path / "a.json") == {"epochs": 3, "lr": 0.5}
    assert read_config_file(str(tmp_path / "a.toml")) == {"epochs": 3, "lr": 0.5}


def test_read_config_file_missing(tmp_path):
    path = tmp_path / "absent.toml"
    with pytest.raises(VaelabError, match="does not exist") as info:
        read_config_file(path)
    assert str(path) in str(info.value)


def test_read_config_file_folder(tmp_path):
    with pytest.raises(VaelabError) as info:
        read_config_file(tmp_path)
    assert str(info.value) == f"config file {tmp_path} is a folder; give --config a .toml or .json file"


@pytest.mark.parametrize("name", ["c.yaml", "c.YML"])
def test_a_yaml_config_is_named_as_such_not_as_bad_json(tmp_path, name):
    path = tmp_path / name
    path.write_text("epochs: 3\n")
    with pytest.raises(VaelabError, match=f"config file {path} is YAML, which vaelab does not read; write it as TOML "
                                          r"\(\.toml\) or JSON \(\.json\)"):
        read_config_file(path)


@pytest.mark.parametrize(
    "name, text, kind",
    [
        ("bad.json", '{"epochs": 3,}', "JSON"),
        ("bad.json", "", "JSON"),
        ("bad.toml", "epochs = \n", "TOML"),
        ("bad.toml", '{"epochs": 3}', "TOML"),  # JSON is not TOML
    ],
)
def test_read_config_file_invalid(tmp_path, name, text, kind):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(VaelabError, match=f"not valid {kind}") as info:
        read_config_file(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("text, type_name", [("[1, 2]", "list"), ('"adam"', "str"), ("3", "int")])
def test_read_config_file_json_not_an_object(tmp_path, text, type_name):
    path = tmp_path / "c.json"
    path.write_text(text)
    with pytest.raises(VaelabError, match=f"table of keys, not {type_name}") as info:
        read_config_file(path)
    assert str(path) in str(info.value)


def test_read_config_file_not_text(tmp_path):
    path = tmp_path / "c.toml"
    path.write_bytes(b"\xff\xfe\x00binary\x80")
    with pytest.raises(VaelabError) as info:
        read_config_file(path)
    assert str(path) in str(info.value)


def test_new_fields_default_to_the_articles_behaviour_and_old_configs_load():
    c = TrainConfig()
    assert (c.lr_schedule, c.stages, c.epochs, c.schedule_note) == ("constant", None, 10, None)
    assert (c.adam_beta1, c.adam_beta2, c.adam_eps) == (0.9, 0.999, 1e-8)  # PyTorch's, which the article used
    assert (c.init, c.output_bias, c.validation_split, c.preset) == ("pytorch", "init", "random", None)
    old = {"latent_size": 48, "epochs": 10, "batch_size": 128, "lr": 0.001, "optimizer": "adam", "seed": 0}
    assert TrainConfig.from_dict(old) == TrainConfig()
    assert TrainConfig.from_dict(TrainConfig(epochs=3).to_dict()).epochs == 3


def test_a_schedule_round_trips_with_its_resolved_epochs_and_stages(tmp_path):
    c = TrainConfig(lr_schedule="iwae", stages=3)
    for suffix in (".json", ".toml"):
        c.save(tmp_path / f"c{suffix}")
        assert TrainConfig.load(tmp_path / f"c{suffix}") == c
    assert c.to_dict()["epochs"] == 13 and c.to_dict()["stages"] == 3


def test_unused_fields_are_those_the_run_never_reads():
    article = TrainConfig()
    assert article.unused_fields() == {"channels", "lower_latent_size", "upper_hidden_size", "beta", "stages",
                                       "validation_split", "class_names", "preset"}
    other = TrainConfig(model="conv", optimizer="rmsprop", objective="beta", beta=2.0, validation=10)
    assert {"adam_beta1", "adam_beta2", "adam_eps"} <= other.unused_fields()
    assert not {"channels", "beta", "validation_split"} & other.unused_fields()
    assert not {"lower_latent_size", "upper_hidden_size"} & TrainConfig(model="mlp2").unused_fields()
