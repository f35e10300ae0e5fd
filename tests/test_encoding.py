from __future__ import annotations

from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

from lawscreen.encoding import encode, load_tokenizer
from lawscreen.errors import ModelArtifactError


@pytest.fixture
def tokenizer_file(tmp_path: Path) -> str:
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(handle_chinese_chars=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=200, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    )
    tokenizer.train_from_iterator(["房东不退押金怎么办", "公司拖欠工资", "abc def"], trainer)
    path = str(tmp_path / "tokenizer.json")
    tokenizer.save(path)
    return path


def test_short_texts_are_wrapped_in_cls_and_sep(tokenizer_file: str) -> None:
    tokenizer = load_tokenizer(tokenizer_file)
    [ids] = encode(tokenizer, ["押金"], max_length=16)
    assert ids[0] == tokenizer.token_to_id("[CLS]")
    assert ids[-1] == tokenizer.token_to_id("[SEP]")
    assert [tokenizer.id_to_token(i) for i in ids[1:-1]] == ["押", "金"]


def test_long_texts_keep_head_and_tail(tokenizer_file: str) -> None:
    tokenizer = load_tokenizer(tokenizer_file)
    text = "房东" + "工资" * 50 + "押金"
    [ids] = encode(tokenizer, [text], max_length=10)
    tokens = [tokenizer.id_to_token(i) for i in ids]
    assert len(ids) == 10
    assert tokens[1:3] == ["房", "东"]
    assert tokens[-3:-1] == ["押", "金"]


def test_a_tokenizer_without_bert_special_tokens_is_refused(tmp_path: Path) -> None:
    plain = Tokenizer(models.WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]"))
    path = str(tmp_path / "plain.json")
    plain.save(path)
    with pytest.raises(ModelArtifactError, match=r"no \[CLS\], \[SEP\], \[PAD\] token"):
        load_tokenizer(path)
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ModelArtifactError, match="cannot load tokenizer"):
        load_tokenizer(str(tmp_path / "broken.json"))
