"""Finding a base offline, and refusing a corrupt or incompatible one with a clear error."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lawscreen.errors import BaseModelError
from lawscreen.settings import get_settings
from lawscreen.train.modeling import load_base, load_classifier, load_masked_lm
from tests.conftest import REPO_ROOT, SAMPLE_POSTS
from tests.train_fixtures import make_tiny_base, separable_posts

TEXTS = [text for text, _ in separable_posts(per_class=20)]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_base(tmp_path_factory.mktemp("pristine"), TEXTS)


@pytest.fixture
def base(tmp_path: Path, pristine: Path) -> Path:
    return Path(shutil.copytree(pristine, tmp_path / "base"))


def _edit_config(base: Path, **changes: object) -> None:
    config = json.loads((base / "config.json").read_text())
    (base / "config.json").write_text(json.dumps(config | changes))


def test_a_directory_base_loads(base: Path) -> None:
    loaded = load_base(str(base), 64)
    assert loaded.path == base.resolve()
    assert loaded.name == str(base.resolve())
    assert load_classifier(loaded).config.num_labels == 2
    assert load_masked_lm(loaded).config.vocab_size == loaded.config.vocab_size


def test_a_bootstrapped_base_is_found_by_name(pristine: Path) -> None:
    shutil.copytree(pristine, get_settings().bases_dir / "mine")
    assert load_base("mine", 64).path == (get_settings().bases_dir / "mine").resolve()


def test_a_hugging_face_id_resolves_from_the_local_cache_only(
    tmp_path: Path, pristine: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The cache layout huggingface_hub writes: refs/main names the snapshot holding the files.
    cache = tmp_path / "hub"
    repo = cache / "models--someone--tiny-bert"
    shutil.copytree(pristine, repo / "snapshots" / ("0" * 40))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))

    loaded = load_base("someone/tiny-bert", 64)

    assert loaded.name == "someone/tiny-bert"
    assert loaded.path == repo / "snapshots" / ("0" * 40)
    with pytest.raises(BaseModelError, match="not in the local Hugging Face cache"):
        load_base("someone/not-cached", 64)


def test_a_vocab_txt_tokenizer_is_used_when_there_is_no_tokenizer_json(base: Path) -> None:
    vocab = json.loads((base / "tokenizer.json").read_text())["model"]["vocab"]
    (base / "vocab.txt").write_text("\n".join(sorted(vocab, key=vocab.get)))
    (base / "tokenizer.json").unlink()
    tokenizer = load_base(str(base), 64).tokenizer
    assert tokenizer.encode("起诉").tokens == ["[CLS]", "起", "诉", "[SEP]"]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("./missing", "no such directory"),
        ("bert-base-chinese", "not in the local Hugging Face cache"),
        ("not a valid id!", "not in the local Hugging Face cache"),
    ],
)
def test_a_missing_base_is_a_clear_error(name: str, message: str) -> None:
    with pytest.raises(BaseModelError, match=message):
        load_base(name, 64)


def test_corrupt_weights_are_a_clear_error(base: Path) -> None:
    (base / "model.safetensors").write_bytes(b"this is not a safetensors file")
    loaded = load_base(str(base), 64)  # config and tokenizer are fine
    with pytest.raises(BaseModelError, match="cannot load the weights"):
        load_classifier(loaded)


def test_weights_of_another_shape_are_a_clear_error(base: Path) -> None:
    _edit_config(base, hidden_size=48, num_attention_heads=2)
    with pytest.raises(BaseModelError, match="does not fit"):
        load_classifier(load_base(str(base), 64))


def test_a_checkpoint_without_an_encoder_is_a_clear_error(base: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    weights = load_file(base / "model.safetensors")
    save_file(
        {k: v for k, v in weights.items() if not k.startswith("bert.encoder")}, base / "model.safetensors"
    )
    with pytest.raises(BaseModelError, match="does not fit"):
        load_classifier(load_base(str(base), 64))


def test_a_trained_classifier_must_have_its_head(base: Path) -> None:
    with pytest.raises(BaseModelError, match="classifier"):
        load_classifier(load_base(str(base), 64), new_head=False)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model_type": "gpt2"}, "is a 'gpt2' model"),
        ({"vocab_size": 10}, "tokenizer has"),
        ({"max_position_embeddings": 32}, "reads at most 32 tokens"),
    ],
)
def test_an_incompatible_base_is_a_clear_error(base: Path, change: dict[str, object], message: str) -> None:
    _edit_config(base, **change)
    with pytest.raises(BaseModelError, match=message):
        load_base(str(base), 64)


def test_a_corrupt_config_or_tokenizer_is_a_clear_error(base: Path) -> None:
    (base / "tokenizer.json").write_text("{not json")
    with pytest.raises(BaseModelError, match="tokenizer"):
        load_base(str(base), 64)
    (base / "config.json").write_text("{not json")
    with pytest.raises(BaseModelError, match=r"config\.json"):
        load_base(str(base), 64)


def test_the_same_posts_give_the_same_tokenizer_in_every_process() -> None:
    """tokenizers numbers word-piece continuations in hash-map order, which changes per process
    (huggingface/tokenizers#1794); on the sample posts four unfixed runs gave four vocabularies."""
    script = (
        "import json, sys\n"
        "from lawscreen.train.pretrain import train_tokenizer\n"
        "texts = [json.loads(line)['text'] for line in open(sys.argv[1], encoding='utf-8')]\n"
        "print(train_tokenizer(texts, vocab_size=8000, min_frequency=1).to_str())\n"
    )
    runs = [
        subprocess.run(
            [sys.executable, "-c", script, str(SAMPLE_POSTS)],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for _ in range(2)
    ]
    assert runs[0] == runs[1]
    vocabulary = json.loads(runs[0])["model"]["vocab"]
    assert "##s" in vocabulary
    assert "法" in vocabulary
